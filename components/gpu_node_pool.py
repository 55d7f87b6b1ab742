"""GpuNodePool: an EKS managed node group built from a shape, ready for GPU pods out of the box.

The NVIDIA AMI, the `nvidia.com/gpu` taint, shape labels, IMDSv2, only the zones that sell the
instance types, and the cluster-autoscaler node-template tags that let a pool scale up from zero
(all built by `ManagedNodeGroup`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from fermion.components.node_group import ManagedNodeGroup, NodeGroupArgs


@dataclass(frozen=True)
class GpuNodePoolArgs(NodeGroupArgs):
    """A pool of nodes of one shape (GPU or CPU) in a cluster, for inference services.

    The pool goes in the cluster's subnets whose zones sell its instance types. Without
    `node_role_arn` the pool makes its own node role.
    """


class GpuNodePool(ManagedNodeGroup):
    """An EKS managed node group of one shape (GPU or CPU) that services run on, with
    scale-from-zero wiring."""

    def __init__(
        self, name: str, args: GpuNodePoolArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fermion:index:GpuNodePool", name, args, opts)
