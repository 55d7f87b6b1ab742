"""The hourly cost of a planned environment, at its minimum and its maximum scale.

The cost is read off the resources the program declares, not off the spec, so it counts what
`pulumi up` would really create: every node group (the system nodes too) at its minimum and
maximum size, the EKS control plane, NAT gateways and interface endpoints. At the minimum, a pool
also counts the nodes its services' minimum replicas hold up, however low its own minimum is.
Prices come from the shape catalog. Data transfer, storage and load balancers depend on use and
are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fermion.environments.shapes import ShapeCatalog
from fermion.stacks.planned import PlannedResource

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SCALED_OBJECT = "kubernetes:http.keda.sh/v1alpha1:HTTPScaledObject"
SHAPE_LABEL = "fermion.dev/shape"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
LEFT_OUT = "data transfer, EBS volumes, S3, ECR storage and load balancers (they depend on use)"


@dataclass(frozen=True)
class CostLine:
    """What one resource costs per hour: `count_min` to `count_max` units at one price."""

    item: str
    urn: str
    detail: str
    count_min: int
    count_max: int
    usd_per_hour_each: float
    note: str | None = None

    @property
    def min_usd(self) -> float:
        return self.count_min * self.usd_per_hour_each

    @property
    def max_usd(self) -> float:
        return self.count_max * self.usd_per_hour_each

    def to_json(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "urn": self.urn,
            "detail": self.detail,
            "count_min": self.count_min,
            "count_max": self.count_max,
            "usd_per_hour_each": self.usd_per_hour_each,
            "min_usd": round(self.min_usd, 4),
            "max_usd": round(self.max_usd, 4),
            "note": self.note,
        }


@dataclass(frozen=True)
class Cost:
    """The environment's cost per hour, line by line, with where the prices came from."""

    lines: tuple[CostLine, ...]
    price_region: str
    read_on: str

    @property
    def per_hour_min_usd(self) -> float:
        return round(sum(line.min_usd for line in self.lines), 4)

    @property
    def per_hour_max_usd(self) -> float:
        return round(sum(line.max_usd for line in self.lines), 4)

    def to_json(self) -> dict[str, Any]:
        return {
            "per_hour_min_usd": self.per_hour_min_usd,
            "per_hour_max_usd": self.per_hour_max_usd,
            "lines": [line.to_json() for line in self.lines],
        }


def estimate_cost(resources: Iterable[PlannedResource], shapes: ShapeCatalog) -> Cost:
    """Price every resource that bills by the hour."""
    platform = shapes.platform
    resources = list(resources)
    held = _nodes_held_by_services(resources, shapes)
    lines: list[CostLine] = []
    for resource in resources:
        inputs = resource.inputs
        if resource.type == NODE_GROUP:
            lines.append(_node_group(resource.urn, resource.name, inputs, shapes, held))
        elif resource.type == EKS_CLUSTER:
            lines.append(
                CostLine(
                    "EKS control plane",
                    resource.urn,
                    f"Kubernetes {inputs.get('version', '?')}",
                    1,
                    1,
                    platform.eks_cluster,
                )
            )
        elif resource.type == NAT_GATEWAY:
            lines.append(
                CostLine(
                    "NAT gateway",
                    resource.urn,
                    resource.name,
                    1,
                    1,
                    platform.nat_gateway,
                    "plus data processed",
                )
            )
        elif resource.type == VPC_ENDPOINT and inputs.get("vpcEndpointType") == "Interface":
            zones = len(inputs.get("subnetIds") or [])
            lines.append(
                CostLine(
                    "interface endpoint",
                    resource.urn,
                    f"{_last(inputs.get('serviceName'))} in {zones} zones",
                    zones,
                    zones,
                    platform.interface_endpoint_per_zone,
                    "plus data processed",
                )
            )
    return Cost(
        lines=tuple(lines),
        price_region=shapes.prices.region,
        read_on=shapes.prices.read_on.isoformat(),
    )


def _nodes_held_by_services(
    resources: list[PlannedResource], shapes: ShapeCatalog
) -> dict[str, int]:
    """Nodes each pool must keep, by URN, for the minimum replicas of the services on its shape.

    A shape's services need ceil(replicas / replicas per node) nodes. The pools of that shape
    give their own minimum first; what is still missing is held up in the first pool of the
    shape (plan order) that has room for it, as cluster-autoscaler would have to.
    """
    minimum: dict[str, int] = {}
    for resource in resources:
        if resource.type == SCALED_OBJECT:
            spec = resource.inputs.get("spec") or {}
            target = (spec.get("scaleTargetRef") or {}).get("name")
            low = (spec.get("replicas") or {}).get("min")
            if isinstance(target, str) and isinstance(low, int):
                minimum[target] = low
    demand: dict[str, int] = {}
    for resource in resources:
        if resource.type != DEPLOYMENT:
            continue
        name = (resource.inputs.get("metadata") or {}).get("name")
        spec = resource.inputs.get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") or {}
        shape = (pod.get("nodeSelector") or {}).get(SHAPE_LABEL)
        replicas = minimum.get(str(name), spec.get("replicas"))
        if isinstance(shape, str) and isinstance(replicas, int):
            demand[shape] = demand.get(shape, 0) + replicas
    pools: dict[str, list[PlannedResource]] = {}
    for resource in resources:
        # The system nodes carry no shape label: no service is scheduled there.
        if resource.type == NODE_GROUP:
            shape = (resource.inputs.get("labels") or {}).get(SHAPE_LABEL)
            if isinstance(shape, str):
                pools.setdefault(shape, []).append(resource)
    held: dict[str, int] = {}
    for shape, replicas in demand.items():
        if shape not in shapes or shape not in pools:
            continue
        per_node = shapes.get(shape).replicas_per_node
        missing = -(-replicas // per_node) - sum(_scaling(p)[0] for p in pools[shape])
        for pool in pools[shape]:
            if missing <= 0:
                break
            low, high = _scaling(pool)
            extra = min(missing, high - low)
            if extra > 0:
                held[pool.urn] = extra
                missing -= extra
    return held


def _scaling(resource: PlannedResource) -> tuple[int, int]:
    scaling = resource.inputs.get("scalingConfig") or {}
    return int(scaling.get("minSize", 0)), int(scaling.get("maxSize", 0))


def _node_group(
    urn: str,
    name: str,
    inputs: Mapping[str, Any],
    shapes: ShapeCatalog,
    held: Mapping[str, int],
) -> CostLine:
    scaling = inputs.get("scalingConfig") or {}
    types = [str(t) for t in inputs.get("instanceTypes") or []]
    spot = inputs.get("capacityType") == "SPOT"
    first = types[0] if types else "?"
    instance = shapes.instance_types.get(first)
    notes = []
    if instance is None:
        notes.append(f"{first} has no price in the shape catalog")
    if spot:
        notes.append("spot: the on-demand price is shown, the most it can cost")
    extra = held.get(urn, 0)
    if extra:
        notes.append(f"at min: {extra} more for the services' minimum replicas")
    return CostLine(
        item="nodes",
        urn=urn,
        detail=f"{name}: {first}{' spot' if spot else ''}",
        count_min=int(scaling.get("minSize", 0)) + extra,
        count_max=int(scaling.get("maxSize", 0)),
        usd_per_hour_each=0.0 if instance is None else instance.usd_per_hour,
        note="; ".join(notes) if notes else None,
    )


def _last(service_name: object) -> str:
    """`ecr.api` from `com.amazonaws.us-east-1.ecr.api`."""
    text = str(service_name)
    parts = text.split(".")
    return ".".join(parts[3:]) if len(parts) > 3 else text
