"""Reading environments: `Pulumi.<env>.yaml` stack files into `EnvironmentSpec`s.

Every failure becomes a `FermionError` that names the file, the key path, the bad value and what
is allowed; the key path also carries its line in the file where it can be found.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from fermion.environments.errors import (
    EnvironmentNotFoundError,
    EnvironmentSpecError,
    SpecProblem,
    StackFileError,
)
from fermion.environments.formats import NAME_MAX
from fermion.environments.shapes import ShapeCatalog
from fermion.environments.spec import EnvironmentSpec
from fermion.environments.yaml_index import KeyIndex, index_keys, with_lines

# Readable forms of the spec's regular expressions, by field name.
_PATTERN_FIXES = {
    "name": (
        "not a DNS label",
        "Use lowercase letters, digits and hyphens, beginning with a letter and ending with a "
        f"letter or digit, at most {NAME_MAX} characters",
    ),
    "vpc_id": ("not a VPC id", "Write it as vpc- and 8 or 17 hex digits"),
    "private_subnet_ids": ("not a subnet id", "Write it as subnet- and 8 or 17 hex digits"),
    "public_subnet_ids": ("not a subnet id", "Write it as subnet- and 8 or 17 hex digits"),
    "version": (
        "not a model version",
        "Use up to 64 letters, digits, '.', '_' and '-', beginning with a letter or digit",
    ),
}

ENVIRONMENT_KEY = "fermion:environment"
REGION_KEY = "aws:region"
STACKS_DIR_ENV = "FERMION_STACKS_DIR"
_STACK_FILE = re.compile(r"^Pulumi\.(?P<env>[^.]+)\.ya?ml$")
_ENV_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_VALUE_WIDTH = 60
# Keys of EnvironmentSpec that are set from outside the environment object.
_MISPLACED = (
    (
        "name",
        "the environment's name comes from its file name (Pulumi.<env>.yaml)",
        "Remove the key, or rename the file",
    ),
    (
        "region",
        f"the region is the stack's `{REGION_KEY}` setting, not part of the environment",
        f"Move it beside {ENVIRONMENT_KEY} as `{REGION_KEY}: <region>`",
    ),
)
# Fixes for pydantic's own error types, which name the problem but not the remedy.
_FIXES = {
    "ip_v4_network": "Write it as A.B.C.D/N, e.g. 10.0.0.0/16",
    "bool_type": "Write true or false",
    "bool_parsing": "Write true or false",
    "int_type": "Write a whole number",
    "int_parsing": "Write a whole number",
    "int_from_float": "Write a whole number",
    "float_parsing": "Write a number",
    "finite_number": "Write a finite number",
    "string_type": "Write a string (quote it in YAML)",
    "list_type": "Write a list",
    "dict_type": "Write a mapping of keys to values",
    "model_type": "Write a mapping of keys to values",
    "model_attributes_type": "Write a mapping of keys to values",
}


def find_stacks_dir(explicit: Path | None, fallback: Path, start: Path | None = None) -> Path:
    """Where environments live: `explicit`, then $FERMION_STACKS_DIR, then the `stackConfigDir` of
    the nearest fermion Pulumi.yaml above `start` (the working folder), then `fallback` (the
    CLI passes the environments that ship with fermion, `fermion.stacks.STACKS_DIR`)."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(STACKS_DIR_ENV)
    if from_env:
        return Path(from_env)
    here = (Path.cwd() if start is None else start).resolve()
    for folder in (here, *here.parents):
        project = folder / "Pulumi.yaml"
        if project.is_file():
            config_dir = _stack_config_dir(project)
            if config_dir is not None:
                return config_dir
            break
    return fallback


def _stack_config_dir(project: Path) -> Path | None:
    try:
        data = yaml.safe_load(project.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(data, dict) or data.get("name") != "fermion":
        return None
    config_dir = data.get("stackConfigDir")
    return project.parent / (config_dir if isinstance(config_dir, str) else ".")


def list_environments(stacks_dir: Path) -> list[str]:
    """The environment names that have a stack file in `stacks_dir`."""
    if not stacks_dir.is_dir():
        return []
    found = (_STACK_FILE.match(p.name) for p in stacks_dir.iterdir())
    return sorted({m.group("env") for m in found if m is not None})


def stack_file(env: str, stacks_dir: Path) -> Path:
    """The stack file of `env`, which must exist."""
    for suffix in ("yaml", "yml"):
        path = stacks_dir / f"Pulumi.{env}.{suffix}"
        if path.is_file():
            return path
    raise EnvironmentNotFoundError(env, stacks_dir, list_environments(stacks_dir))


def load_environment(
    env: str, stacks_dir: Path, shapes: ShapeCatalog | None = None
) -> EnvironmentSpec:
    """Read and check the environment `env` from its stack file in `stacks_dir`."""
    if not _ENV_NAME.match(env) or len(env) > NAME_MAX:
        raise EnvironmentSpecError(
            f"environment {env!r}",
            [
                SpecProblem(
                    "",
                    "an environment name must be a DNS label: lowercase letters, digits and "
                    f"hyphens, beginning with a letter, at most {NAME_MAX} characters",
                    repr(env),
                    "Rename the stack file",
                )
            ],
        )
    path = stack_file(env, stacks_dir)
    return read_stack_file(path, env, shapes)


def read_stack_file(path: Path, env: str, shapes: ShapeCatalog | None = None) -> EnvironmentSpec:
    """Parse one `Pulumi.<env>.yaml` file into an EnvironmentSpec."""
    return read_stack_config(path).spec(env, shapes)


@dataclass(frozen=True)
class StackConfig:
    """A stack file's fermion settings, as written: what Pulumi hands the program."""

    path: Path
    text: str
    environment: object
    region: object
    keys: KeyIndex

    def spec(self, env: str, shapes: ShapeCatalog | None = None) -> EnvironmentSpec:
        """The checked spec; errors name this file and the line of each bad key."""
        return parse_environment(
            self.environment,
            env,
            region=self.region,
            source=str(self.path),
            shapes=shapes,
            lines=_line_index(self.keys),
        )


def read_stack_config(path: Path) -> StackConfig:
    """Read a `Pulumi.<env>.yaml` file's `fermion:environment` object and region, unchecked."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StackFileError(path, f"cannot be read ({exc.strerror})", "Check the path") from None
    except UnicodeDecodeError:
        raise StackFileError(path, "is not UTF-8 text", "Save it as UTF-8") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StackFileError(
            path, f"is not valid YAML: {_yaml_message(exc)}", "Fix the YAML syntax"
        ) from None
    keys = index_keys(text)
    repeated = _repeated_keys(keys)
    if repeated:
        raise EnvironmentSpecError(str(path), repeated)
    config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict) or ENVIRONMENT_KEY not in config:
        raise StackFileError(
            path,
            f"has no `config: {ENVIRONMENT_KEY}:` object",
            "Add one; an empty object ({}) takes every default, and "
            f"{path.parent / 'Pulumi.dev.yaml'} shows a full one",
        )
    return StackConfig(
        path=path,
        text=text,
        environment=config[ENVIRONMENT_KEY],
        region=config.get(REGION_KEY, config.get("region")),
        keys=keys,
    )


def parse_environment(
    data: object,
    env: str,
    *,
    region: object = None,
    source: str = ENVIRONMENT_KEY,
    shapes: ShapeCatalog | None = None,
    lines: Mapping[str, int] | None = None,
) -> EnvironmentSpec:
    """Check an environment object (as read from YAML or JSON) and build the spec.

    Raises `EnvironmentSpecError` listing every problem found; never another exception for bad
    data.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EnvironmentSpecError(
            source,
            [
                SpecProblem(
                    ENVIRONMENT_KEY,
                    "must be an object with keys such as network, cluster, node_pools, services",
                    _show(data),
                    "Write it as a YAML mapping",
                )
            ],
        )
    misplaced = [
        SpecProblem(key, problem, _show(data[key]), fix)
        for key, problem, fix in _MISPLACED
        if key in data
    ]
    if misplaced:
        raise EnvironmentSpecError(source, with_lines(misplaced, lines))
    payload: dict[Any, Any] = {**data, "name": env}
    if region is not None:
        payload["region"] = region
    context = {"source": source, "shapes": shapes}
    try:
        spec = EnvironmentSpec.model_validate(payload, context=context)
    except ValidationError as exc:
        problems = [_problem(err) for err in exc.errors(include_url=False)]
        raise EnvironmentSpecError(source, with_lines(problems, lines)) from None
    except EnvironmentSpecError as exc:
        raise EnvironmentSpecError(source, with_lines(exc.problems, lines)) from None
    except RecursionError:
        raise EnvironmentSpecError(
            source, [SpecProblem("", "the object is nested too deeply", None, "Flatten it")]
        ) from None
    return spec


def _problem(err: ErrorDetails) -> SpecProblem:
    loc = tuple(err["loc"])
    path = _path(loc)
    kind = err["type"]
    message = err["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        key = str(loc[-1]) if loc else ""
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        return SpecProblem(
            path, "unknown key", None, f"{hint}Allowed keys here: {', '.join(allowed)}"
        )
    if kind == "missing":
        return SpecProblem(path, "is required", None, "Add it")
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return SpecProblem(
            path, f"not an allowed value; use one of {expected}", _show(err["input"])
        )
    if path == "region":
        path = REGION_KEY
    if kind == "string_pattern_mismatch":
        field = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
        fix = _PATTERN_FIXES.get(field)
        if fix is not None:
            return SpecProblem(path, fix[0], _show(err["input"]), fix[1])
    return SpecProblem(path, message, _show(err["input"]), _FIXES.get(kind))


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _allowed_keys(loc: Sequence[int | str]) -> list[str]:
    """The field names of the model found at `loc` inside EnvironmentSpec."""
    model: Any = EnvironmentSpec
    for part in loc:
        if isinstance(part, str) and isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(part)
            if field is None:
                return []
            model = field.annotation
        model = _unwrap(model, by_index=isinstance(part, int))
    if isinstance(model, type) and issubclass(model, BaseModel):
        hidden = {key for key, _, _ in _MISPLACED} if model is EnvironmentSpec else set()
        return [name for name in model.model_fields if name not in hidden]
    return []


def _unwrap(annotation: Any, *, by_index: bool) -> Any:
    # list[X] indexed by position gives X; X | None gives X.
    origin = get_origin(annotation)
    if by_index and origin is list:
        return get_args(annotation)[0]
    args = [a for a in get_args(annotation) if a is not type(None)]
    if origin is not list and len(args) == 1 and isinstance(args[0], type):
        return args[0]
    return annotation


def _show(value: object) -> str:
    try:
        text = json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > _VALUE_WIDTH:
        text = text[: _VALUE_WIDTH - 3] + "..."
    return text


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(problem)


def _line_index(keys: KeyIndex) -> dict[str, int]:
    """Each key path under `config: fermion:environment:` with its line, and the region's."""
    index = keys.under(f"config.{ENVIRONMENT_KEY}")
    region = keys.lines.get(f"config.{REGION_KEY}")
    if region is not None:
        index[REGION_KEY] = region
    return index


def _repeated_keys(keys: KeyIndex) -> list[SpecProblem]:
    """Keys given twice; inside the environment they read as the spec's own key paths."""
    return [
        SpecProblem(
            r.path.removeprefix(f"config.{ENVIRONMENT_KEY}."),
            f"key {r.key!r} is given twice, at lines {r.first_line} and {r.line}; "
            "YAML would keep the second and silently drop the first",
            None,
            "Keep one of them",
            r.line,
        )
        for r in keys.repeated
    ]
