"""The VPC endpoints of a new network: S3 as a gateway, and the interface endpoints asked for.

Nodes in private subnets then reach ECR, STS and CloudWatch Logs without crossing the NAT.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

# Builds a resource's tags, its Name ending in the suffix given.
Tagger = Callable[[str], dict[str, pulumi.Input[str]]]


@dataclass(frozen=True)
class EndpointPlacement:
    """Where endpoints go: the VPC and its block, its private subnets and their route tables."""

    vpc: aws.ec2.Vpc
    cidr: str
    private_subnets: Sequence[aws.ec2.Subnet]
    private_route_tables: Sequence[aws.ec2.RouteTable]


def vpc_endpoints(
    name: str,
    cluster_name: str,
    where: EndpointPlacement,
    services: Sequence[str],
    region: pulumi.Output[str],
    tags: Tagger,
    parent: pulumi.Resource,
) -> None:
    """An S3 gateway endpoint on the private route tables, and an interface endpoint with
    private DNS for each of `services`, behind one security group that admits HTTPS from the
    VPC. All are children of `parent`."""
    child = pulumi.ResourceOptions(parent=parent)
    vpc = where.vpc
    # Image layers come from S3: the gateway endpoint is free and keeps pulls off the NAT.
    aws.ec2.VpcEndpoint(
        f"{name}-s3",
        vpc_id=vpc.id,
        service_name=_service_name(region, "s3"),
        vpc_endpoint_type="Gateway",
        route_table_ids=[t.id for t in where.private_route_tables],
        tags=tags("s3"),
        opts=child,
    )
    if not services:
        return
    group = aws.ec2.SecurityGroup(
        f"{name}-endpoints",
        vpc_id=vpc.id,
        description=f"HTTPS from {cluster_name}'s VPC to its interface endpoints",
        ingress=[
            {
                "description": "HTTPS from the VPC",
                "protocol": "tcp",
                "from_port": 443,
                "to_port": 443,
                "cidr_blocks": [where.cidr],
            }
        ],
        tags=tags("endpoints"),
        opts=child,
    )
    for service in dict.fromkeys(services):
        aws.ec2.VpcEndpoint(
            f"{name}-{service.replace('.', '-')}",
            vpc_id=vpc.id,
            service_name=_service_name(region, service),
            vpc_endpoint_type="Interface",
            private_dns_enabled=True,
            subnet_ids=[s.id for s in where.private_subnets],
            security_group_ids=[group.id],
            tags=tags(service),
            opts=child,
        )


def _service_name(region: pulumi.Output[str], service: str) -> pulumi.Output[str]:
    return region.apply(lambda name: f"com.amazonaws.{name}.{service}")
