"""SystemNodeGroup: the CPU nodes a cluster's own software (its add-ons) runs on.

They are kept for that software: they carry the `CriticalAddonsOnly` taint, which only the
add-ons tolerate, and not the shape labels services select on. Pools hold the services.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi

from fermion.components.cluster_core import ClusterCore
from fermion.components.node_group import ManagedNodeGroup, NodeGroupArgs, Taint
from fermion.environments.shapes import Shape

ROLE_LABEL = "fermion.dev/role"
# The usual taint for nodes kept for cluster add-ons. EKS's managed add-ons tolerate it as they
# come (CoreDNS, the EBS CSI controller), and their DaemonSets (vpc-cni, kube-proxy, the Pod
# Identity agent, the EBS CSI node) tolerate every taint; ClusterAddons' releases tolerate it.
SYSTEM_TAINT = Taint("CriticalAddonsOnly", "true", "NoSchedule")
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
    `fermion.dev/role: system` and tainted with `SYSTEM_TAINT`, so no service lands there."""

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
                # Services select nodes by shape; the system nodes must never match.
                shape_selectable=False,
                taints=(SYSTEM_TAINT,),
                tags=args.tags,
            ),
            opts,
        )
