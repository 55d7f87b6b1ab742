"""SystemNodeGroup: the CPU nodes a cluster's own software (its add-ons) runs on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi

from fermion.components.cluster_core import ClusterCore
from fermion.components.node_group import ManagedNodeGroup, NodeGroupArgs
from fermion.environments.shapes import Shape

ROLE_LABEL = "fermion.dev/role"
# Clusters deployed before this component had its own type built their system nodes as a
# GpuNodePool; the alias lets them keep those resources instead of replacing them.
_FORMER_TYPE = "fermion:index:GpuNodePool"


@dataclass(frozen=True)
class SystemNodeGroupArgs:
    """The cluster's system nodes: one CPU shape, sized to run the add-ons."""

    cluster: ClusterCore
    shape: Shape
    min_size: int = 2
    max_size: int = 3
    desired_size: int | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


class SystemNodeGroup(ManagedNodeGroup):
    """An EKS managed node group for the cluster's own software, labelled
    `fermion.dev/role: system`."""

    def __init__(
        self, name: str, args: SystemNodeGroupArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=_FORMER_TYPE)])
        )
        super().__init__(
            "fermion:index:SystemNodeGroup",
            name,
            NodeGroupArgs(
                cluster=args.cluster,
                shape=args.shape,
                min_size=args.min_size,
                max_size=args.max_size,
                desired_size=args.desired_size,
                labels={ROLE_LABEL: "system"},
                tags=args.tags,
            ),
            opts,
        )
