"""ManagedNodeGroup: the EKS managed node group that `GpuNodePool` and `SystemNodeGroup` build.

What pulumi-eks leaves to its users happens here: the NVIDIA AMI, the `nvidia.com/gpu` taint,
shape labels, IMDSv2, only the zones that sell the instance types, and the cluster-autoscaler
node-template tags that let a group scale up from zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi
import pulumi_aws as aws

from fermion.components.cluster_core import ClusterCore
from fermion.components.iam import service_role
from fermion.environments.errors import FermionError
from fermion.environments.shapes import Shape

GPU_TAINT_KEY = "nvidia.com/gpu"
# The node group API spells taint effects its own way.
_EKS_EFFECTS = {
    "NoSchedule": "NO_SCHEDULE",
    "PreferNoSchedule": "PREFER_NO_SCHEDULE",
    "NoExecute": "NO_EXECUTE",
}
# Which OS a node runs: Bottlerocket's NVIDIA variant brings its own device plugin.
AMI_LABEL = "fermion.dev/ami"
# cluster-autoscaler on AWS counts a node with this label as a GPU node even before its device
# plugin reports GPUs, so it does not scale up twice for one pending pod.
ACCELERATOR_LABEL = "k8s.amazonaws.com/accelerator"
_AMI_TYPES = {
    ("al2023", True): "AL2023_x86_64_NVIDIA",
    ("al2023", False): "AL2023_x86_64_STANDARD",
    ("bottlerocket", True): "BOTTLEROCKET_x86_64_NVIDIA",
    ("bottlerocket", False): "BOTTLEROCKET_x86_64",
}
# Bottlerocket keeps images and containers on its second volume; AL2023 on the root volume.
_DATA_DEVICE = {"al2023": "/dev/xvda", "bottlerocket": "/dev/xvdb"}
_NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
)


class NoZoneOffersShapeError(FermionError):
    """None of the pool's subnets is in a zone that sells its instance types."""

    def __init__(self, pool: str, instance_types: Sequence[str], zones: Sequence[str]) -> None:
        super().__init__(
            f"node pool {pool!r}: no subnet is in a zone that offers {', '.join(instance_types)} "
            f"(subnet zones: {', '.join(zones) or 'none'}). Add subnets in a zone that sells "
            "them, or pick another shape or region"
        )


@dataclass(frozen=True)
class Taint:
    """A taint on every node of a group, with its effect as Kubernetes writes it."""

    key: str
    value: str
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"

    def node_group_taint(self) -> dict[str, str]:
        """The taint as the EKS node group API takes it."""
        return {"key": self.key, "value": self.value, "effect": _EKS_EFFECTS[self.effect]}


GPU_TAINT = Taint(GPU_TAINT_KEY, "true")


@dataclass(frozen=True)
class NodeGroupArgs:
    """Nodes of one shape in a cluster (`Cluster.core` or `ExistingCluster.core`).

    The group goes in the cluster's subnets whose zones sell its instance types. Its nodes
    carry the shape's labels, which services select on, unless `shape_selectable` is off;
    they carry `taints` after the GPU taint a GPU shape brings. Without `node_role_arn` the
    group makes its own node role.
    """

    cluster: ClusterCore
    shape: Shape
    capacity: Literal["on_demand", "spot"] = "on_demand"
    min_size: int = 0
    max_size: int = 2
    desired_size: int | None = None
    ami: Literal["al2023", "bottlerocket"] = "al2023"
    disk_gib: int = 200
    labels: Mapping[str, str] = field(default_factory=dict)
    shape_selectable: bool = True
    taints: tuple[Taint, ...] = ()
    node_role_arn: pulumi.Input[str] | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


class ManagedNodeGroup(pulumi.ComponentResource):
    """An EKS managed node group of one shape (GPU or CPU), with scale-from-zero wiring.

    The base of `GpuNodePool` and `SystemNodeGroup`, which name the component's type.
    """

    node_group: aws.eks.NodeGroup
    node_group_name: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]
    subnet_ids: pulumi.Output[list[str]]
    labels: dict[str, str]
    taints: list[Taint]

    def __init__(
        self,
        type_: str,
        name: str,
        args: NodeGroupArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        shape = args.shape
        instance_types = [it.name for it in shape.instance_types]
        selected_by = shape_labels(shape) if args.shape_selectable else {}
        self.labels = {**dict(args.labels), **selected_by, AMI_LABEL: args.ami}
        self.taints = [*gpu_taints(shape), *args.taints]

        offerings = aws.ec2.get_instance_type_offerings_output(
            location_type="availability-zone",
            filters=[
                aws.ec2.GetInstanceTypeOfferingsFilterArgs(
                    name="instance-type", values=instance_types
                )
            ],
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        self.subnet_ids = pulumi.Output.all(
            args.cluster.subnet_ids,
            args.cluster.subnet_zones,
            offerings.instance_types,
            offerings.locations,
        ).apply(lambda parts: _subnets_in_offering_zones(name, instance_types, *parts))

        role_arn = args.node_role_arn
        self.policy_attachments: list[aws.iam.RolePolicyAttachment] = []
        if role_arn is None:
            role, self.policy_attachments = service_role(
                f"{name}-node", "ec2.amazonaws.com", _NODE_POLICIES, args.tags, self
            )
            role_arn = role.arn
        self.node_role_arn = pulumi.Output.from_input(role_arn)

        template = aws.ec2.LaunchTemplate(
            f"{name}-nodes",
            # IMDSv2 only, one hop: pods cannot borrow the node's credentials.
            metadata_options={
                "http_endpoint": "enabled",
                "http_tokens": "required",
                "http_put_response_hop_limit": 1,
            },
            block_device_mappings=[
                {
                    "device_name": _DATA_DEVICE[args.ami],
                    "ebs": {
                        "volume_size": args.disk_gib,
                        "volume_type": "gp3",
                        "encrypted": "true",
                        "delete_on_termination": "true",
                    },
                }
            ],
            tag_specifications=[{"resource_type": "instance", "tags": dict(args.tags)}],
            tags=dict(args.tags),
            opts=child,
        )
        desired = args.min_size if args.desired_size is None else args.desired_size
        self.node_group = aws.eks.NodeGroup(
            name,
            cluster_name=args.cluster.name,
            node_role_arn=self.node_role_arn,
            subnet_ids=self.subnet_ids,
            ami_type=_AMI_TYPES[(args.ami, shape.is_gpu)],
            capacity_type="SPOT" if args.capacity == "spot" else "ON_DEMAND",
            instance_types=instance_types,
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=args.min_size, max_size=args.max_size, desired_size=desired
            ),
            labels=self.labels,
            taints=[
                aws.eks.NodeGroupTaintArgs(**taint.node_group_taint()) for taint in self.taints
            ],
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)
            ),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            tags=dict(args.tags),
            # The autoscaler owns the size once the pool exists.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["scalingConfig.desiredSize"]),
        )
        self.node_group_name = self.node_group.node_group_name
        asg_name = self.node_group.resources.apply(_first_asg_name)
        tags: list[tuple[pulumi.Input[str], str]] = sorted(
            autoscaler_tags(shape, self.labels, self.taints).items()
        )
        tags.append(
            (pulumi.Output.concat("k8s.io/cluster-autoscaler/", args.cluster.name), "owned")
        )
        self.autoscaler_tags = [
            aws.autoscaling.Tag(
                f"{name}-asg-{i}",
                autoscaling_group_name=asg_name,
                tag={"key": key, "value": value, "propagate_at_launch": False},
                opts=child,
            )
            for i, (key, value) in enumerate(tags)
        ]
        self.register_outputs(
            {
                "node_group_name": self.node_group_name,
                "node_role_arn": self.node_role_arn,
                "subnet_ids": self.subnet_ids,
                "labels": self.labels,
            }
        )


def shape_labels(shape: Shape) -> dict[str, str]:
    """The labels every node of a shape carries, which services select on."""
    labels = {"fermion.dev/shape": shape.name}
    if shape.gpu is not None:
        labels["fermion.dev/gpu-model"] = shape.gpu.model
        labels["fermion.dev/gpus-per-node"] = str(shape.primary.gpu_count)
        labels[ACCELERATOR_LABEL] = f"nvidia-{shape.gpu.model.lower()}"
    return labels


def gpu_taints(shape: Shape) -> list[Taint]:
    """GPU nodes repel pods that do not tolerate the GPU taint."""
    return [GPU_TAINT] if shape.is_gpu else []


def autoscaler_tags(
    shape: Shape, labels: Mapping[str, str], taints: Sequence[Taint] = ()
) -> dict[str, str]:
    """The node-template tags cluster-autoscaler reads to scale a pool up from zero nodes.

    (The pool also carries `k8s.io/cluster-autoscaler/<cluster>: owned`, for auto-discovery.)
    """
    prefix = "k8s.io/cluster-autoscaler/node-template"
    tags = {
        "k8s.io/cluster-autoscaler/enabled": "true",
        **{f"{prefix}/label/{key}": value for key, value in labels.items()},
    }
    for taint in taints:
        tags[f"{prefix}/taint/{taint.key}"] = f"{taint.value}:{taint.effect}"
    if shape.is_gpu:
        tags[f"{prefix}/resources/{GPU_TAINT_KEY}"] = str(shape.primary.gpu_count)
    return tags


def _subnets_in_offering_zones(
    pool: str,
    instance_types: Sequence[str],
    subnet_ids: Sequence[str],
    subnet_zones: Sequence[str],
    offered_types: Sequence[str],
    offered_zones: Sequence[str],
) -> list[str]:
    offered: dict[str, set[str]] = {}
    for instance_type, zone in zip(offered_types, offered_zones, strict=True):
        offered.setdefault(zone, set()).add(instance_type)
    # A zone must sell every type of the pool: a managed node group launches any of them there.
    wanted = set(instance_types)
    chosen = [
        subnet
        for subnet, zone in zip(subnet_ids, subnet_zones, strict=True)
        if wanted <= offered.get(zone, set())
    ]
    if not chosen:
        raise NoZoneOffersShapeError(pool, instance_types, sorted(set(subnet_zones)))
    return chosen


def _first_asg_name(resources: Any) -> str:
    groups = resources[0]["autoscaling_groups"] if resources else []
    return str(groups[0]["name"]) if groups else ""
