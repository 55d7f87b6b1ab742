"""Random and mangled environments give a valid spec or a FermionError, never anything else."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fermion.environments import EnvironmentSpec, FermionError, parse_environment, read_stack_file

from ..conftest import environment_data

KEYS = st.sampled_from(
    ["network", "cluster", "node_pools", "services", "storage", "registry", "tags", "name",
     "region", "shape", "replicas", "min", "max", "size", "cidr", "model", "uri", "handler",
     "format", "inputs", "labels", "bucket", "nat", "version", "batching", "x"]
) | st.text(max_size=12)  # fmt: skip

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(
        ["gpu.a10", "gpu.l4", "cpu.small", "10.0.0.0/16", "s3://b/k/", "x:FP32:-1", "spot", "1"]
    )
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=25,
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(data: Any, env: str = "dev") -> EnvironmentSpec | FermionError:
    try:
        return parse_environment(data, env)
    except FermionError as exc:
        assert str(exc)  # every error has a message
        return exc


@FUZZ
@given(JSON)
def test_random_objects(data: Any) -> None:
    outcome(data)


@FUZZ
@given(st.dictionaries(KEYS, JSON, max_size=6))
def test_random_mappings(data: dict[str, Any]) -> None:
    outcome(data)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


@FUZZ
@given(
    base=st.sampled_from(["dev", "prod"]),
    edits=st.lists(
        st.tuples(st.integers(min_value=0), st.sampled_from(["replace", "delete", "add"]), JSON),
        min_size=1,
        max_size=4,
    ),
)
def test_mangled_shipped_environments(base: str, edits: list[tuple[int, str, Any]]) -> None:
    data = copy.deepcopy(environment_data(base))
    for pick, action, value in edits:
        paths = _paths(data)
        if not paths:
            break
        path = paths[pick % len(paths)]
        parent: Any = data
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        if action == "replace":
            parent[last] = value
        elif action == "delete":
            del parent[last]
        elif isinstance(parent[last], dict):
            parent[last][f"extra{pick % 7}"] = value
        elif isinstance(parent[last], list):
            parent[last].append(value)
    outcome(data, base)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_stack_file_text(tmp_path_factory: Any, text: str) -> None:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    path = folder / "Pulumi.fz.yaml"
    path.write_text("config:\n  fermion:environment:\n" + text, encoding="utf-8")
    with contextlib.suppress(FermionError):
        read_stack_file(path, "fz")
