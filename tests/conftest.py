from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from fermion.stacks.manifests import is_kubernetes_object
from fermion.stacks.plan import Plan

REPO = Path(__file__).resolve().parent.parent
STACKS = REPO / "stacks"


SCHEMAS = REPO / "tests" / "components" / "schemas"


def crd_schema(file: str) -> dict[str, Any]:
    """The served version's OpenAPI schema of a custom resource definition in tests' schemas."""
    crd = yaml.safe_load((SCHEMAS / file).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("served")]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def plan_objects(plan: Plan, kind: str) -> list[dict[str, Any]]:
    """The Kubernetes objects of one kind that a plan declares, as plain data."""
    return [
        dict(r.inputs)
        for r in plan.resources
        if is_kubernetes_object(r) and r.inputs.get("kind") == kind
    ]


def environment_data(env: str) -> dict[str, Any]:
    """The `fermion:environment` object of a shipped stack file, as plain data."""
    document = yaml.safe_load((STACKS / f"Pulumi.{env}.yaml").read_text())
    return copy.deepcopy(document["config"]["fermion:environment"])


@pytest.fixture
def dev() -> dict[str, Any]:
    return environment_data("dev")


@pytest.fixture
def prod() -> dict[str, Any]:
    return environment_data("prod")


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The runtime's test models, built once per session."""
    from .runtime.models import build

    return build(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")
