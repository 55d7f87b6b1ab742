"""Environments as data: the environment spec, the shape catalog, and fermion's errors.

The Pulumi program itself is `__main__.py` in this folder (Pulumi.yaml's `main`). Names are
loaded on first use, so that importing `fermion.stacks.errors` (as the CLI does at start-up) does
not pull in pydantic and YAML.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fermion.stacks.environment import (
        ENVIRONMENT_KEY,
        find_stacks_dir,
        list_environments,
        load_environment,
        parse_environment,
        read_stack_file,
        stack_file,
    )
    from fermion.stacks.errors import (
        EnvironmentNotFoundError,
        EnvironmentSpecError,
        FermionError,
        ShapeCatalogError,
        SpecProblem,
        StackFileError,
        UnknownShapeError,
    )
    from fermion.stacks.formats import parse_tensor_spec
    from fermion.stacks.rules import check_environment
    from fermion.stacks.shapes import (
        Gpu,
        InstanceType,
        PriceSource,
        Shape,
        ShapeCatalog,
        load_shapes,
    )
    from fermion.stacks.spec import (
        AutoscalingSpec,
        BatchingSpec,
        ClusterSpec,
        EnvironmentSpec,
        ModelSpec,
        NetworkSpec,
        NodePoolSpec,
        RegistrySpec,
        ReplicasSpec,
        ServiceSpec,
        SizeSpec,
        StorageSpec,
        SystemNodesSpec,
    )

_MODULES = {
    "fermion.stacks.formats": ("parse_tensor_spec",),
    "fermion.stacks.rules": ("check_environment",),
    "fermion.stacks.spec": (
        "AutoscalingSpec",
        "BatchingSpec",
        "ClusterSpec",
        "EnvironmentSpec",
        "ModelSpec",
        "NetworkSpec",
        "NodePoolSpec",
        "RegistrySpec",
        "ReplicasSpec",
        "ServiceSpec",
        "SizeSpec",
        "StorageSpec",
        "SystemNodesSpec",
    ),
    "fermion.stacks.environment": (
        "ENVIRONMENT_KEY",
        "find_stacks_dir",
        "list_environments",
        "load_environment",
        "parse_environment",
        "read_stack_file",
        "stack_file",
    ),
    "fermion.stacks.errors": (
        "EnvironmentNotFoundError",
        "EnvironmentSpecError",
        "FermionError",
        "ShapeCatalogError",
        "SpecProblem",
        "StackFileError",
        "UnknownShapeError",
    ),
    "fermion.stacks.shapes": (
        "Gpu",
        "InstanceType",
        "PriceSource",
        "Shape",
        "ShapeCatalog",
        "load_shapes",
    ),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "ENVIRONMENT_KEY",
    "AutoscalingSpec",
    "BatchingSpec",
    "ClusterSpec",
    "EnvironmentNotFoundError",
    "EnvironmentSpec",
    "EnvironmentSpecError",
    "FermionError",
    "Gpu",
    "InstanceType",
    "ModelSpec",
    "NetworkSpec",
    "NodePoolSpec",
    "PriceSource",
    "RegistrySpec",
    "ReplicasSpec",
    "ServiceSpec",
    "Shape",
    "ShapeCatalog",
    "ShapeCatalogError",
    "SizeSpec",
    "SpecProblem",
    "StackFileError",
    "StorageSpec",
    "SystemNodesSpec",
    "UnknownShapeError",
    "check_environment",
    "find_stacks_dir",
    "list_environments",
    "load_environment",
    "load_shapes",
    "parse_environment",
    "parse_tensor_spec",
    "read_stack_file",
    "stack_file",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fermion.stacks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
