"""The `model_cache` section: off by default, and bad input named with its key path and fix."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from fermion.cli import app
from fermion.environments import parse_environment

from .test_spec import assert_problem

SERVICE = {"name": "m", "shape": "cpu.large", "inputs": ["x:FP32:-1,4"]}
POOL = {"name": "cpu", "shape": "cpu.large", "size": {"min": 1, "max": 4}}


def _env(**model_cache: Any) -> dict[str, Any]:
    return {"node_pools": [dict(POOL)], "services": [dict(SERVICE)], "model_cache": model_cache}


def test_off_by_default_with_a_size_ready() -> None:
    spec = parse_environment({"services": [dict(SERVICE)], "node_pools": [dict(POOL)]}, "qa")
    assert spec.model_cache.enabled is False
    assert spec.model_cache.size_gib == 100


def test_turned_on() -> None:
    spec = parse_environment(_env(enabled=True, size_gib=80), "qa")
    assert (spec.model_cache.enabled, spec.model_cache.size_gib) == (True, 80)


@pytest.mark.parametrize(
    ("model_cache", "path", "fragment"),
    [
        ({"enabled": "perhaps"}, "model_cache.enabled", "boolean"),
        ({"enabled": True, "size_gib": 0}, "model_cache.size_gib", "greater than or equal to 1"),
        ({"enabled": True, "size_gib": "lots"}, "model_cache.size_gib", "integer"),
        ({"enabled": True, "sizeGiB": 10}, "model_cache.sizeGiB", "Did you mean 'size_gib'"),
    ],
)
def test_bad_values_are_named(model_cache: dict[str, Any], path: str, fragment: str) -> None:
    assert_problem(_env(**model_cache), path, fragment)


def test_a_cache_larger_than_half_a_pools_disk_is_refused_with_the_fix() -> None:
    data = _env(enabled=True, size_gib=120)
    data["node_pools"][0]["disk_gib"] = 200
    problem = assert_problem(data, "model_cache.size_gib", "node pool 'cpu' has 200 GiB disks")
    assert problem.fix == (
        "Lower model_cache.size_gib to 100 or less, or raise node_pools[0].disk_gib to 240 or more"
    )


def test_a_cache_with_no_services_is_refused() -> None:
    data = {"node_pools": [dict(POOL)], "model_cache": {"enabled": True}}
    problem = assert_problem(data, "model_cache.enabled", "no services")
    assert problem.fix == "Add a service, or set model_cache.enabled: false"


def test_a_cache_that_is_off_is_not_checked_against_the_disks() -> None:
    data = _env(enabled=False, size_gib=5000)
    assert parse_environment(data, "qa").model_cache.size_gib == 5000


def test_the_cache_namespace_is_no_tenants(tmp_path: Any) -> None:
    data = _env()
    data["tenants"] = [
        {
            "name": "a",
            "namespace": "fermion-model-cache",
            "quota": {"cpu": 64, "memory_gib": 256, "pods": 20},
        }
    ]
    data["services"][0]["tenant"] = "a"
    assert_problem(data, "tenants[0].namespace", "belongs to Kubernetes or to fermion")


def test_validate_prints_the_problem_without_a_traceback(tmp_path: Any) -> None:
    import yaml

    document = {"config": {"aws:region": "us-west-2", "fermion:environment": _env(enabled="x")}}
    (tmp_path / "Pulumi.qa.yaml").write_text(yaml.safe_dump(document))
    result = CliRunner().invoke(app, ["validate", "qa", "--stacks-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "model_cache.enabled" in result.output
    assert "Traceback" not in result.output
