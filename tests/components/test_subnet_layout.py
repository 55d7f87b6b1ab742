"""subnet_layout: the blocks, zones and NAT placement of a new VPC, with no Pulumi involved."""

from __future__ import annotations

import ast
import ipaddress
import itertools
from pathlib import Path

import pytest

from fermion.components import subnet_layout as subnet_layout_module
from fermion.components.subnet_layout import (
    NetworkArgsError,
    SubnetLayoutError,
    ZoneSubnets,
    first_zones,
    subnet_layout,
)
from fermion.environments.errors import FermionError


def test_two_zones_of_a_16_in_20s() -> None:
    layout = subnet_layout("10.0.0.0/16", 2, 20)
    assert layout.zones == (
        ZoneSubnets(zone=0, public_cidr="10.0.0.0/20", private_cidr="10.0.32.0/20", nat=0),
        ZoneSubnets(zone=1, public_cidr="10.0.16.0/20", private_cidr="10.0.48.0/20", nat=1),
    )
    assert layout.nat_zones == (0, 1)


def test_three_zones_public_blocks_first_then_private() -> None:
    layout = subnet_layout("10.0.0.0/16", 3, 20)
    assert layout.public_cidrs == ["10.0.0.0/20", "10.0.16.0/20", "10.0.32.0/20"]
    assert layout.private_cidrs == ["10.0.48.0/20", "10.0.64.0/20", "10.0.80.0/20"]


def test_six_zones_fill_twelve_of_the_sixteen_20s() -> None:
    layout = subnet_layout("10.1.0.0/16", 6, 20)
    assert layout.public_cidrs == [f"10.1.{16 * i}.0/20" for i in range(6)]
    assert layout.private_cidrs == [f"10.1.{16 * i}.0/20" for i in range(6, 12)]
    assert [zone.zone for zone in layout.zones] == list(range(6))


def test_the_largest_layout_that_fits() -> None:
    layout = subnet_layout("10.0.0.0/24", 4, 27)
    assert layout.public_cidrs == ["10.0.0.0/27", "10.0.0.32/27", "10.0.0.64/27", "10.0.0.96/27"]
    assert layout.private_cidrs == [
        "10.0.0.128/27",
        "10.0.0.160/27",
        "10.0.0.192/27",
        "10.0.0.224/27",
    ]


@pytest.mark.parametrize(
    ("cidr", "zones", "prefix_length"),
    [
        (cidr, zones, prefix)
        for cidr, zones, prefix in itertools.product(
            ["10.0.0.0/16", "172.16.0.0/18", "192.168.0.0/24"], [2, 3, 4, 6], range(17, 29)
        )
        if 2 ** (prefix - int(cidr.rsplit("/", 1)[1])) >= 2 * zones
        and prefix > int(cidr.rsplit("/", 1)[1])
    ],
)
def test_blocks_are_inside_the_vpc_and_never_overlap(
    cidr: str, zones: int, prefix_length: int
) -> None:
    layout = subnet_layout(cidr, zones, prefix_length)
    vpc = ipaddress.IPv4Network(cidr)
    blocks = [ipaddress.IPv4Network(b) for b in layout.public_cidrs + layout.private_cidrs]
    assert len(blocks) == 2 * zones
    assert all(b.subnet_of(vpc) and b.prefixlen == prefix_length for b in blocks)
    assert not any(a.overlaps(b) for a, b in itertools.combinations(blocks, 2))


def test_per_az_nat_keeps_each_zone_in_its_own_gateway() -> None:
    layout = subnet_layout("10.0.0.0/16", 3, 20, nat="per_az")
    assert layout.nat_zones == (0, 1, 2)
    assert [zone.nat for zone in layout.zones] == [0, 1, 2]


def test_a_single_nat_sits_in_the_first_zone_for_all() -> None:
    layout = subnet_layout("10.0.0.0/16", 3, 20, nat="single")
    assert layout.nat_zones == (0,)
    assert [zone.nat for zone in layout.zones] == [0, 0, 0]


def test_without_nat_no_zone_has_a_way_out() -> None:
    layout = subnet_layout("10.0.0.0/16", 3, 20, nat="none")
    assert layout.nat_zones == ()
    assert [zone.nat for zone in layout.zones] == [None, None, None]


# Layouts that cannot be made, and what the error says; test_network checks that the
# component refuses the same ones.
UNFITTING = [
    ("10.0.0.0/16", 16, 3, "Use a prefix length from 17 to 28"),
    ("10.0.0.0/16", 29, 3, "Use a prefix length from 17 to 28"),
    ("10.0.0.0/24", 26, 3, "6 subnets (one public and one private per zone) are needed"),
    ("10.0.0.0/16", 19, 6, "10.0.0.0/16 holds only 8 /19 subnets. Raise subnet_prefix_length"),
]


@pytest.mark.parametrize(
    ("cidr", "prefix_length", "zones", "expected"),
    UNFITTING,
)
def test_subnets_that_do_not_fit_are_a_clear_error(
    cidr: str, prefix_length: int, zones: int, expected: str
) -> None:
    with pytest.raises(SubnetLayoutError) as raised:
        subnet_layout(cidr, zones, prefix_length)
    assert isinstance(raised.value, FermionError)
    assert raised.value.needed == 2 * zones
    message = str(raised.value)
    assert message.startswith(f"network subnet_prefix_length {prefix_length}: ")
    assert expected in message


@pytest.mark.parametrize(
    ("cidr", "zones", "nat", "expected"),
    [
        ("10.0.0.1/16", 2, "per_az", "network cidr '10.0.0.1/16'"),
        ("10.0.0.0/8", 2, "per_az", "a VPC's block must be a /16 to a /28"),
        ("10.0.0.0/16", 0, "per_az", "one zone or more"),
        ("10.0.0.0/16", 2, "shared", "is not a NAT mode. Use one of per_az, single, none"),
    ],
)
def test_a_block_zones_or_nat_mode_that_describe_no_network(
    cidr: str, zones: int, nat: str, expected: str
) -> None:
    with pytest.raises(NetworkArgsError, match=expected):
        subnet_layout(cidr, zones, 20, nat)  # type: ignore[arg-type]


def test_the_first_zones_of_a_region() -> None:
    zones = ["us-west-2a", "us-west-2b", "us-west-2c", "us-west-2d"]
    assert first_zones(zones, 3) == zones[:3]
    with pytest.raises(
        NetworkArgsError, match=r"only 2 available zones \(us-west-2a, us-west-2b\)"
    ):
        first_zones(zones[:2], 3)


def test_the_layout_imports_no_pulumi() -> None:
    source = Path(subnet_layout_module.__file__).read_text(encoding="utf-8")
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            imported.add(node.module.split(".")[0])
    assert not {"pulumi", "pulumi_aws"} & imported
