"""The hourly cost of a planned environment, at its minimum and its maximum scale.

The cost is read off the resources the program declares, not off the spec, so it counts what
`pulumi up` would really create: every node group (the system nodes too) at its minimum and
maximum size, the EKS control plane, NAT gateways and interface endpoints. Prices come from the
shape catalog. Data transfer, storage and load balancers depend on use and are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fermion.environments.shapes import ShapeCatalog
from fermion.stacks.planned import PlannedResource

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
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
    lines: list[CostLine] = []
    for resource in resources:
        inputs = resource.inputs
        if resource.type == NODE_GROUP:
            lines.append(_node_group(resource.urn, resource.name, inputs, shapes))
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


def _node_group(urn: str, name: str, inputs: Mapping[str, Any], shapes: ShapeCatalog) -> CostLine:
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
    return CostLine(
        item="nodes",
        urn=urn,
        detail=f"{name}: {first}{' spot' if spot else ''}",
        count_min=int(scaling.get("minSize", 0)),
        count_max=int(scaling.get("maxSize", 0)),
        usd_per_hour_each=0.0 if instance is None else instance.usd_per_hour,
        note="; ".join(notes) if notes else None,
    )


def _last(service_name: object) -> str:
    """`ecr.api` from `com.amazonaws.us-east-1.ecr.api`."""
    text = str(service_name)
    parts = text.split(".")
    return ".".join(parts[3:]) if len(parts) > 3 else text
