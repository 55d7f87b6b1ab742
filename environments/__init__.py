"""The ground floor: the environment model every other part of fermion reads.

It holds fermion's errors, the environment spec (pydantic models, single-value formats and the
rules that span fields), the shape catalog, and reading `Pulumi.<env>.yaml` stack files. It
imports nothing else from fermion. Names are loaded on first use, so that importing
`fermion.environments.errors` (as the CLI does at start-up) does not pull in pydantic and YAML.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fermion.environments.errors import (
        EnvironmentNotFoundError,
        EnvironmentSpecError,
        FermionError,
        ShapeCatalogError,
        SpecProblem,
        StackFileError,
        UnknownShapeError,
    )
    from fermion.environments.formats import parse_tensor_spec
    from fermion.environments.rules import check_environment
    from fermion.environments.sections import (
        AutoscalingSpec,
        BatchingSpec,
        ClusterSpec,
        ModelSpec,
        NetworkSpec,
        NodePoolSpec,
        PolicyWaiverSpec,
        RegistrySpec,
        ReplicasSpec,
        ServiceSpec,
        SizeSpec,
        StorageSpec,
        SystemNodesSpec,
    )
    from fermion.environments.shapes import (
        Gpu,
        InstanceType,
        PriceSource,
        Shape,
        ShapeCatalog,
        load_shapes,
    )
    from fermion.environments.spec import EnvironmentSpec
    from fermion.environments.stack_files import (
        ENVIRONMENT_KEY,
        find_stacks_dir,
        list_environments,
        load_environment,
        parse_environment,
        read_stack_file,
        stack_file,
    )

_MODULES = {
    "fermion.environments.formats": ("parse_tensor_spec",),
    "fermion.environments.rules": ("check_environment",),
    "fermion.environments.spec": ("EnvironmentSpec",),
    "fermion.environments.sections": (
        "AutoscalingSpec",
        "BatchingSpec",
        "ClusterSpec",
        "ModelSpec",
        "NetworkSpec",
        "NodePoolSpec",
        "PolicyWaiverSpec",
        "RegistrySpec",
        "ReplicasSpec",
        "ServiceSpec",
        "SizeSpec",
        "StorageSpec",
        "SystemNodesSpec",
    ),
    "fermion.environments.stack_files": (
        "ENVIRONMENT_KEY",
        "find_stacks_dir",
        "list_environments",
        "load_environment",
        "parse_environment",
        "read_stack_file",
        "stack_file",
    ),
    "fermion.environments.errors": (
        "EnvironmentNotFoundError",
        "EnvironmentSpecError",
        "FermionError",
        "ShapeCatalogError",
        "SpecProblem",
        "StackFileError",
        "UnknownShapeError",
    ),
    "fermion.environments.shapes": (
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
    "PolicyWaiverSpec",
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
        raise AttributeError(f"module 'fermion.environments' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
