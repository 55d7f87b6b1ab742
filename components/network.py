"""Network: the VPC an EKS cluster runs in, created by fermion or an existing one given by id."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import pulumi
import pulumi_aws as aws

from fermion.components.flow_logs import vpc_flow_log
from fermion.components.subnet_layout import (
    NatMode,
    NetworkArgsError,
    SubnetLayout,
    check_nat_mode,
    first_zones,
    subnet_layout,
    vpc_network,
)
from fermion.components.vpc_endpoints import EndpointPlacement, vpc_endpoints

InterfaceService = Literal["ecr.api", "ecr.dkr", "sts", "logs"]

# The only retention periods CloudWatch Logs accepts (0 keeps events forever).
_RETENTION_DAYS = frozenset(
    (0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
     2922, 3288, 3653)
)  # fmt: skip
_ANYWHERE = "0.0.0.0/0"


@dataclass(frozen=True)
class NetworkArgs:
    """The network a cluster named `cluster_name` runs in.

    A new VPC takes `cidr`, split into one public and one private subnet per zone, each a
    `/subnet_prefix_length`: the public subnets take the first blocks, the private subnets the
    blocks after them. The zones are `zone_names` when given (their count then overrides
    `availability_zones`), else the first `availability_zones` of the region's available zones.
    `nat` is one NAT gateway per zone (`per_az`), one shared by every zone (`single`), or none,
    in which case private subnets have no route out of the VPC. `region` only names the VPC
    endpoints' services and must be the provider's region; when None it is looked up.

    Giving `vpc_id` with `private_subnet_ids` (and optionally `public_subnet_ids`) reuses that
    VPC instead: nothing is created in it, not even flow logs or endpoints, because its routes,
    logging and endpoints belong to whoever owns it. `tags` go on every resource created.
    """

    cluster_name: str
    cidr: str = "10.0.0.0/16"
    availability_zones: int = 3
    zone_names: tuple[str, ...] | None = None
    subnet_prefix_length: int = 20
    nat: NatMode = "per_az"
    interface_endpoints: tuple[InterfaceService, ...] = ("ecr.api", "ecr.dkr", "sts", "logs")
    flow_logs: bool = True
    flow_log_retention_days: int = 90
    region: str | None = None
    vpc_id: pulumi.Input[str] | None = None
    private_subnet_ids: tuple[pulumi.Input[str], ...] = ()
    public_subnet_ids: tuple[pulumi.Input[str], ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vpc_id is not None or self.private_subnet_ids or self.public_subnet_ids:
            self._check_reuse()
            return
        self._check_new()

    @property
    def zone_count(self) -> int:
        """How many zones the new VPC spans."""
        return len(self.zone_names) if self.zone_names is not None else self.availability_zones

    def layout(self) -> SubnetLayout:
        """Where the new VPC's subnets and NAT gateways go (see `subnet_layout`)."""
        return subnet_layout(self.cidr, self.zone_count, self.subnet_prefix_length, self.nat)

    def _check_reuse(self) -> None:
        if self.vpc_id is None:
            raise NetworkArgsError(
                "private_subnet_ids",
                list(self.private_subnet_ids) + list(self.public_subnet_ids),
                "subnets were given without the VPC they belong to",
                "Set vpc_id as well, or leave the subnet ids out to create a new VPC",
            )
        if not self.private_subnet_ids:
            raise NetworkArgsError(
                "vpc_id",
                self.vpc_id,
                "an existing VPC needs the private subnets the cluster's nodes run in",
                "Set private_subnet_ids as well",
            )

    def _check_new(self) -> None:
        vpc_network(self.cidr)
        if self.zone_names is not None and len(set(self.zone_names)) != len(self.zone_names):
            raise NetworkArgsError(
                "zone_names", list(self.zone_names), "names a zone twice", "Name each zone once"
            )
        if self.zone_count < 2:
            raise NetworkArgsError(
                "zone_names" if self.zone_names is not None else "availability_zones",
                list(self.zone_names) if self.zone_names is not None else self.availability_zones,
                "EKS needs subnets in at least two availability zones",
                "Use two or more zones",
            )
        check_nat_mode(self.nat)
        unknown = [s for s in self.interface_endpoints if s not in get_args(InterfaceService)]
        if unknown:
            raise NetworkArgsError(
                "interface_endpoints",
                unknown,
                "fermion creates interface endpoints only for its own services",
                f"Choose from {', '.join(get_args(InterfaceService))}",
            )
        if self.flow_logs and self.flow_log_retention_days not in _RETENTION_DAYS:
            raise NetworkArgsError(
                "flow_log_retention_days",
                self.flow_log_retention_days,
                "CloudWatch Logs does not accept that retention",
                f"Use one of {', '.join(str(d) for d in sorted(_RETENTION_DAYS))}",
            )
        self.layout()


class Network(pulumi.ComponentResource):
    """The VPC networking an EKS cluster needs.

    A new VPC gets public subnets (tagged for internet-facing load balancers) routed to an
    internet gateway, private subnets (tagged for internal load balancers and for Karpenter's
    discovery) routed through NAT, an S3 gateway endpoint on the private route tables, interface
    endpoints for the requested AWS services, and flow logs to CloudWatch. An existing VPC is
    passed through untouched; its block and its private subnets' zones are looked up.

    Outputs: `vpc_id`, `vpc_cidr`, `public_subnet_ids`, `private_subnet_ids`,
    `private_subnet_zones` (the zone of each private subnet, in the same order),
    `availability_zones` and `nat_gateway_ids` (empty without NAT).
    """

    vpc: aws.ec2.Vpc | None
    flow_log: aws.ec2.FlowLog | None
    vpc_id: pulumi.Output[str]
    vpc_cidr: pulumi.Output[str]
    public_subnet_ids: pulumi.Output[list[str]]
    private_subnet_ids: pulumi.Output[list[str]]
    private_subnet_zones: pulumi.Output[list[str]]
    availability_zones: pulumi.Output[list[str]]
    nat_gateway_ids: pulumi.Output[list[str]]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fermion:index:Network", name, None, opts)
        self._name = name
        self._args = args
        self.vpc = None
        self.flow_log = None
        if args.vpc_id is not None:
            self._reuse(args.vpc_id)
        else:
            self._create()
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "vpc_cidr": self.vpc_cidr,
                "public_subnet_ids": self.public_subnet_ids,
                "private_subnet_ids": self.private_subnet_ids,
                "private_subnet_zones": self.private_subnet_zones,
                "availability_zones": self.availability_zones,
                "nat_gateway_ids": self.nat_gateway_ids,
            }
        )

    def _reuse(self, vpc_id: pulumi.Input[str]) -> None:
        args = self._args
        invoke = pulumi.InvokeOutputOptions(parent=self)
        self.vpc_id = pulumi.Output.from_input(vpc_id)
        # The cluster's security rules need the block and zones; the given ids alone lack them.
        self.vpc_cidr = aws.ec2.get_vpc_output(id=vpc_id, opts=invoke).cidr_block
        self.private_subnet_ids = pulumi.Output.all(*args.private_subnet_ids)
        self.public_subnet_ids = pulumi.Output.all(*args.public_subnet_ids)
        zones = [
            aws.ec2.get_subnet_output(id=subnet_id, opts=invoke).availability_zone
            for subnet_id in args.private_subnet_ids
        ]
        self.private_subnet_zones = pulumi.Output.all(*zones)
        self.availability_zones = self.private_subnet_zones.apply(_distinct)
        self.nat_gateway_ids = pulumi.Output.from_input([])

    def _create(self) -> None:
        args = self._args
        child = pulumi.ResourceOptions(parent=self)
        layout = args.layout()
        zone_names = self._zones()
        zones = [_nth(zone_names, zone.zone) for zone in layout.zones]

        vpc = aws.ec2.Vpc(
            f"{self._name}-vpc",
            cidr_block=args.cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags=self._tags("vpc"),
            opts=child,
        )
        self.vpc = vpc
        cluster_tag = {f"kubernetes.io/cluster/{args.cluster_name}": "shared"}
        public = [
            aws.ec2.Subnet(
                f"{self._name}-public-{i}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=zone,
                tags=self._tags(
                    zone.apply(lambda z: f"public-{z}"),
                    {**cluster_tag, "kubernetes.io/role/elb": "1"},
                ),
                opts=child,
            )
            for i, (cidr, zone) in enumerate(zip(layout.public_cidrs, zones, strict=True))
        ]
        private = [
            aws.ec2.Subnet(
                f"{self._name}-private-{i}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=zone,
                tags=self._tags(
                    zone.apply(lambda z: f"private-{z}"),
                    {
                        **cluster_tag,
                        "kubernetes.io/role/internal-elb": "1",
                        "karpenter.sh/discovery": args.cluster_name,
                    },
                ),
                opts=child,
            )
            for i, (cidr, zone) in enumerate(zip(layout.private_cidrs, zones, strict=True))
        ]

        gateway = aws.ec2.InternetGateway(
            f"{self._name}-igw", vpc_id=vpc.id, tags=self._tags("igw"), opts=child
        )
        public_routes = aws.ec2.RouteTable(
            f"{self._name}-public", vpc_id=vpc.id, tags=self._tags("public"), opts=child
        )
        aws.ec2.Route(
            f"{self._name}-public-default",
            route_table_id=public_routes.id,
            destination_cidr_block=_ANYWHERE,
            gateway_id=gateway.id,
            opts=child,
        )
        for i, subnet in enumerate(public):
            aws.ec2.RouteTableAssociation(
                f"{self._name}-public-{i}",
                route_table_id=public_routes.id,
                subnet_id=subnet.id,
                opts=child,
            )

        nats = self._nat_gateways(layout, public, zones, gateway)
        private_routes: list[aws.ec2.RouteTable] = []
        for i, (subnet, zone, place) in enumerate(zip(private, zones, layout.zones, strict=True)):
            table = aws.ec2.RouteTable(
                f"{self._name}-private-{i}",
                vpc_id=vpc.id,
                tags=self._tags(zone.apply(lambda z: f"private-{z}")),
                opts=child,
            )
            private_routes.append(table)
            if place.nat is not None:
                aws.ec2.Route(
                    f"{self._name}-private-{i}-default",
                    route_table_id=table.id,
                    destination_cidr_block=_ANYWHERE,
                    nat_gateway_id=nats[place.nat].id,
                    opts=child,
                )
            aws.ec2.RouteTableAssociation(
                f"{self._name}-private-{i}",
                route_table_id=table.id,
                subnet_id=subnet.id,
                opts=child,
            )

        vpc_endpoints(
            self._name,
            args.cluster_name,
            EndpointPlacement(vpc, args.cidr, private, private_routes),
            args.interface_endpoints,
            self._region(),
            self._tags,
            self,
        )
        if args.flow_logs:
            self.flow_log = vpc_flow_log(
                self._name,
                vpc,
                args.cluster_name,
                args.flow_log_retention_days,
                self._tags("flow-logs"),
                self,
            )

        self.vpc_id = vpc.id
        self.vpc_cidr = vpc.cidr_block
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public])
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private])
        self.private_subnet_zones = pulumi.Output.all(*zones)
        self.availability_zones = self.private_subnet_zones
        self.nat_gateway_ids = pulumi.Output.all(*[n.id for n in nats])

    def _zones(self) -> pulumi.Output[list[str]]:
        args = self._args
        if args.zone_names is not None:
            return pulumi.Output.from_input(list(args.zone_names))
        count = args.zone_count
        found = aws.get_availability_zones_output(
            state="available",
            # Local and Wavelength zones are opt-in and lack services EKS needs.
            filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        return found.names.apply(lambda names: first_zones(names, count))

    def _nat_gateways(
        self,
        layout: SubnetLayout,
        public: Sequence[aws.ec2.Subnet],
        zones: Sequence[pulumi.Output[str]],
        gateway: aws.ec2.InternetGateway,
    ) -> list[aws.ec2.NatGateway]:
        nats: list[aws.ec2.NatGateway] = []
        for i, zone in enumerate(layout.nat_zones):
            address = aws.ec2.Eip(
                f"{self._name}-nat-{i}",
                domain="vpc",
                tags=self._tags(zones[zone].apply(lambda z: f"nat-{z}")),
                opts=pulumi.ResourceOptions(parent=self),
            )
            nats.append(
                aws.ec2.NatGateway(
                    f"{self._name}-nat-{i}",
                    allocation_id=address.id,
                    subnet_id=public[zone].id,
                    tags=self._tags(zones[zone].apply(lambda z: f"nat-{z}")),
                    # A NAT gateway forwards through the internet gateway; AWS asks that it
                    # exist first.
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
                )
            )
        return nats

    def _region(self) -> pulumi.Output[str]:
        if self._args.region is not None:
            return pulumi.Output.from_input(self._args.region)
        found = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self))
        return found.region

    def _tags(
        self, suffix: pulumi.Input[str], extra: Mapping[str, str] | None = None
    ) -> dict[str, pulumi.Input[str]]:
        cluster = self._args.cluster_name
        tags: dict[str, pulumi.Input[str]] = {**self._args.tags}
        if extra is not None:
            tags.update(extra)
        tags["Name"] = pulumi.Output.from_input(suffix).apply(lambda s: f"{cluster}-{s}")
        return tags


def _nth(names: pulumi.Output[list[str]], index: int) -> pulumi.Output[str]:
    return names.apply(lambda found: found[index])


def _distinct(zones: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(zones))
