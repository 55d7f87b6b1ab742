"""The layout of a new VPC: which block each subnet gets, in which zone, and where NAT goes.

Pure arithmetic, with no Pulumi in it: `Network` creates what `subnet_layout` describes. Zones
are numbered in the order the VPC uses them (the first `n` of the region's, or the names given).
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from fermion.environments.errors import FermionError

NatMode = Literal["per_az", "single", "none"]
# AWS refuses subnets smaller than a /28, and VPC blocks larger than a /16.
SMALLEST_SUBNET = 28
LARGEST_VPC = 16


class NetworkArgsError(FermionError):
    """NetworkArgs that cannot describe a network."""

    def __init__(self, field: str, value: object, problem: str, fix: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"network {field} {value!r}: {problem}. {fix}")


class SubnetLayoutError(NetworkArgsError):
    """The requested subnets do not fit in the VPC's CIDR block."""

    def __init__(self, cidr: str, prefix_length: int, needed: int) -> None:
        self.cidr = cidr
        self.prefix_length = prefix_length
        self.needed = needed
        network = ipaddress.IPv4Network(cidr)
        if not network.prefixlen < prefix_length <= SMALLEST_SUBNET:
            problem = (
                f"a subnet must be smaller than the VPC's {cidr} and no smaller than "
                f"/{SMALLEST_SUBNET}"
            )
            fix = f"Use a prefix length from {network.prefixlen + 1} to {SMALLEST_SUBNET}"
        else:
            fits = 2 ** (prefix_length - network.prefixlen)
            problem = (
                f"{needed} subnets (one public and one private per zone) are needed, but "
                f"{cidr} holds only {fits} /{prefix_length} subnets"
            )
            fix = "Raise subnet_prefix_length, widen cidr, or use fewer availability zones"
        super().__init__("subnet_prefix_length", prefix_length, problem, fix)


@dataclass(frozen=True)
class ZoneSubnets:
    """One zone's part of the VPC: its public and private blocks, and the NAT gateway its
    private subnet leaves through (an index into `SubnetLayout.nat_zones`; None: no way out)."""

    zone: int
    public_cidr: str
    private_cidr: str
    nat: int | None


@dataclass(frozen=True)
class SubnetLayout:
    """Every zone's subnets, in zone order, and the zone whose public subnet holds each NAT
    gateway, in gateway order."""

    zones: tuple[ZoneSubnets, ...]
    nat_zones: tuple[int, ...]

    @property
    def public_cidrs(self) -> list[str]:
        return [zone.public_cidr for zone in self.zones]

    @property
    def private_cidrs(self) -> list[str]:
        return [zone.private_cidr for zone in self.zones]


def vpc_network(cidr: str) -> ipaddress.IPv4Network:
    """The VPC's block, refused unless it is one AWS accepts."""
    try:
        network = ipaddress.IPv4Network(cidr)
    except ValueError as error:
        raise NetworkArgsError(
            "cidr", cidr, str(error), "Use an IPv4 block such as 10.0.0.0/16"
        ) from error
    if not LARGEST_VPC <= network.prefixlen <= SMALLEST_SUBNET:
        raise NetworkArgsError(
            "cidr",
            cidr,
            f"a VPC's block must be a /{LARGEST_VPC} to a /{SMALLEST_SUBNET}",
            "Use a block such as 10.0.0.0/16",
        )
    return network


def check_nat_mode(nat: str) -> None:
    """Refuse a NAT mode that is not one of `NatMode`."""
    if nat not in get_args(NatMode):
        raise NetworkArgsError(
            "nat", nat, "is not a NAT mode", f"Use one of {', '.join(get_args(NatMode))}"
        )


def subnet_layout(
    cidr: str, zones: int, prefix_length: int, nat: NatMode = "per_az"
) -> SubnetLayout:
    """Cut `cidr` into one public and one private `/prefix_length` per zone, and place NAT.

    The public subnets take the first blocks, in zone order, and the private subnets the blocks
    after them. `per_az` puts a NAT gateway in every zone's public subnet and keeps each zone's
    traffic in that zone; `single` puts one in the first zone for every zone to share; `none`
    leaves the private subnets with no route out of the VPC.
    """
    network = vpc_network(cidr)
    check_nat_mode(nat)
    if zones < 1:
        raise NetworkArgsError(
            "availability_zones", zones, "a VPC needs subnets in one zone or more", "Use 2 or more"
        )
    needed = 2 * zones
    if not network.prefixlen < prefix_length <= SMALLEST_SUBNET:
        raise SubnetLayoutError(cidr, prefix_length, needed)
    if 2 ** (prefix_length - network.prefixlen) < needed:
        raise SubnetLayoutError(cidr, prefix_length, needed)
    # islice: a wide VPC cut into small subnets holds far more blocks than are needed.
    blocks = [str(b) for b in itertools.islice(network.subnets(new_prefix=prefix_length), needed)]
    nat_zones = {"per_az": tuple(range(zones)), "single": (0,), "none": ()}[nat]
    return SubnetLayout(
        zones=tuple(
            ZoneSubnets(
                zone=i,
                public_cidr=blocks[i],
                private_cidr=blocks[zones + i],
                nat=None if not nat_zones else (i if len(nat_zones) > 1 else 0),
            )
            for i in range(zones)
        ),
        nat_zones=nat_zones,
    )


def first_zones(names: Sequence[str], count: int) -> list[str]:
    """The first `count` of a region's zones, or a clear error when it has fewer."""
    if len(names) < count:
        raise NetworkArgsError(
            "availability_zones",
            count,
            f"the region has only {len(names)} available zones ({', '.join(names)})",
            "Lower availability_zones, or name the zones with zone_names",
        )
    return list(names[:count])
