"""Environments as data: the environment spec, the shape catalog, and fermion's errors.

The Pulumi program itself is `__main__.py` in this folder (Pulumi.yaml's `main`).
"""

from __future__ import annotations

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
from fermion.stacks.shapes import Gpu, InstanceType, PriceSource, Shape, ShapeCatalog, load_shapes
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
    check_environment,
    parse_tensor_spec,
)

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
