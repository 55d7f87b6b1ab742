from __future__ import annotations

import ipaddress
import json
from typing import Any

import pulumi
import pytest

from fermion.components.network import Network, NetworkArgs
from fermion.components.subnet_layout import NetworkArgsError, SubnetLayoutError
from fermion.environments.errors import FermionError

from .conftest import Recorder, resolve, settle
from .test_subnet_layout import UNFITTING

ZONES = ["us-west-2a", "us-west-2b", "us-west-2c", "us-west-2d"]
LOG_GROUP_ARN = "arn:aws:logs:us-west-2:123456789012:log-group:/aws/vpc-flow-logs/fermion-dev"
ROLE_ARN = "arn:aws:iam::123456789012:role/fermion-dev-flow-logs"

VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
EIP = "aws:ec2/eip:Eip"
NAT = "aws:ec2/natGateway:NatGateway"
IGW = "aws:ec2/internetGateway:InternetGateway"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
ROUTE = "aws:ec2/route:Route"
ASSOCIATION = "aws:ec2/routeTableAssociation:RouteTableAssociation"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
GET_ZONES = "aws:index/getAvailabilityZones:getAvailabilityZones"
GET_REGION = "aws:index/getRegion:getRegion"


def _mock_aws(mocks: Recorder) -> None:
    mocks.call_results[GET_ZONES] = {
        "names": ZONES,
        "zoneIds": [f"usw2-az{i + 1}" for i in range(len(ZONES))],
        "groupNames": ["us-west-2"],
        "id": "us-west-2",
        "state": "available",
    }
    mocks.call_results[GET_REGION] = {
        "name": "us-west-2",
        "region": "us-west-2",
        "id": "us-west-2",
        "endpoint": "ec2.us-west-2.amazonaws.com",
        "description": "US West (Oregon)",
    }
    mocks.outputs[LOG_GROUP] = {"arn": LOG_GROUP_ARN}
    mocks.outputs[ROLE] = {"arn": ROLE_ARN}


def _build(mocks: Recorder, **overrides: Any) -> Network:
    _mock_aws(mocks)
    values: dict[str, Any] = {"cluster_name": "fermion-dev", "tags": {"team": "ml"}}
    values.update(overrides)
    network = Network("net", NetworkArgs(**values))
    resolve(network.private_subnet_ids)
    settle()
    return network


def _named(mocks: Recorder, typ: str) -> dict[str, dict[str, Any]]:
    return {r.name: r.inputs for r in mocks.of_type(typ)}


def test_a_new_vpc_has_a_public_and_a_private_subnet_per_zone(mocks: Recorder) -> None:
    network = _build(mocks)
    (vpc,) = mocks.of_type(VPC)
    assert vpc.inputs["cidrBlock"] == "10.0.0.0/16"
    assert vpc.inputs["enableDnsSupport"] is True
    assert vpc.inputs["enableDnsHostnames"] is True
    subnets = _named(mocks, SUBNET)
    public = [subnets[f"net-public-{i}"] for i in range(3)]
    private = [subnets[f"net-private-{i}"] for i in range(3)]
    assert len(subnets) == 6
    assert [s["availabilityZone"] for s in public] == ZONES[:3]
    assert [s["availabilityZone"] for s in private] == ZONES[:3]
    blocks = [ipaddress.IPv4Network(s["cidrBlock"]) for s in public + private]
    vpc_block = ipaddress.IPv4Network("10.0.0.0/16")
    assert all(b.subnet_of(vpc_block) and b.prefixlen == 20 for b in blocks)
    assert not any(a.overlaps(b) for i, a in enumerate(blocks) for b in blocks[i + 1 :])
    for subnet in public:
        assert subnet["vpcId"] == "net-vpc-id"
        assert subnet["tags"]["kubernetes.io/cluster/fermion-dev"] == "shared"
        assert subnet["tags"]["kubernetes.io/role/elb"] == "1"
        assert "karpenter.sh/discovery" not in subnet["tags"]
    for subnet in private:
        assert subnet["tags"]["kubernetes.io/cluster/fermion-dev"] == "shared"
        assert subnet["tags"]["kubernetes.io/role/internal-elb"] == "1"
        assert subnet["tags"]["karpenter.sh/discovery"] == "fermion-dev"
        assert "kubernetes.io/role/elb" not in subnet["tags"]
    assert public[0]["tags"]["Name"] == "fermion-dev-public-us-west-2a"
    assert resolve(network.vpc_id) == "net-vpc-id"
    assert resolve(network.vpc_cidr) == "10.0.0.0/16"
    assert resolve(network.public_subnet_ids) == [f"net-public-{i}-id" for i in range(3)]
    assert resolve(network.private_subnet_ids) == [f"net-private-{i}-id" for i in range(3)]
    assert resolve(network.availability_zones) == ZONES[:3]
    assert resolve(network.private_subnet_zones) == ZONES[:3]
    (zones_call,) = [c for c in mocks.calls if c.token == GET_ZONES]
    assert zones_call.args["state"] == "available"
    assert zones_call.args["filters"] == [
        {"name": "opt-in-status", "values": ["opt-in-not-required"]}
    ]


def test_every_tagged_resource_carries_the_tags_and_a_name(mocks: Recorder) -> None:
    _build(mocks)
    tagged = [r for r in mocks.resources if "tags" in r.inputs]
    untaggable = {"fermion:index:Network", ROUTE, ASSOCIATION, ROLE_POLICY}
    assert {r.typ for r in mocks.resources} - untaggable == {r.typ for r in tagged}
    for resource in tagged:
        assert resource.inputs["tags"]["team"] == "ml", resource.name
        assert resource.inputs["tags"]["Name"].startswith("fermion-dev-"), resource.name


def test_per_az_nat_routes_each_zone_through_its_own_gateway(mocks: Recorder) -> None:
    network = _build(mocks)
    addresses = _named(mocks, EIP)
    nats = _named(mocks, NAT)
    assert len(addresses) == 3
    assert all(a["domain"] == "vpc" for a in addresses.values())
    assert [nats[f"net-nat-{i}"]["subnetId"] for i in range(3)] == [
        f"net-public-{i}-id" for i in range(3)
    ]
    assert [nats[f"net-nat-{i}"]["allocationId"] for i in range(3)] == [
        f"net-nat-{i}-id" for i in range(3)
    ]
    routes = _named(mocks, ROUTE)
    for i in range(3):
        route = routes[f"net-private-{i}-default"]
        assert route["destinationCidrBlock"] == "0.0.0.0/0"
        assert route["routeTableId"] == f"net-private-{i}-id"
        assert route["natGatewayId"] == f"net-nat-{i}-id"
    assert resolve(network.nat_gateway_ids) == [f"net-nat-{i}-id" for i in range(3)]


def test_public_subnets_route_to_the_internet_gateway(mocks: Recorder) -> None:
    _build(mocks)
    (gateway,) = mocks.of_type(IGW)
    assert gateway.inputs["vpcId"] == "net-vpc-id"
    tables = _named(mocks, ROUTE_TABLE)
    assert set(tables) == {"net-public", "net-private-0", "net-private-1", "net-private-2"}
    public_route = _named(mocks, ROUTE)["net-public-default"]
    assert public_route == {
        "destinationCidrBlock": "0.0.0.0/0",
        "gatewayId": "net-igw-id",
        "routeTableId": "net-public-id",
    }
    associations = {a["subnetId"]: a["routeTableId"] for a in _named(mocks, ASSOCIATION).values()}
    assert associations == {
        **{f"net-public-{i}-id": "net-public-id" for i in range(3)},
        **{f"net-private-{i}-id": f"net-private-{i}-id" for i in range(3)},
    }


def test_a_single_nat_is_shared_by_every_zone(mocks: Recorder) -> None:
    network = _build(mocks, nat="single")
    (nat,) = mocks.of_type(NAT)
    assert nat.inputs["subnetId"] == "net-public-0-id"
    assert len(mocks.of_type(EIP)) == 1
    private_routes = [r for r in mocks.of_type(ROUTE) if r.name.startswith("net-private-")]
    assert len(private_routes) == 3
    assert {r.inputs["natGatewayId"] for r in private_routes} == {"net-nat-0-id"}
    assert resolve(network.nat_gateway_ids) == ["net-nat-0-id"]


def test_without_nat_private_subnets_have_no_default_route(mocks: Recorder) -> None:
    network = _build(mocks, nat="none")
    assert mocks.of_type(NAT) == []
    assert mocks.of_type(EIP) == []
    assert [r.name for r in mocks.of_type(ROUTE)] == ["net-public-default"]
    assert len(_named(mocks, ROUTE_TABLE)) == 4
    assert resolve(network.nat_gateway_ids) == []


def test_the_s3_gateway_and_the_default_interface_endpoints(mocks: Recorder) -> None:
    _build(mocks)
    endpoints = _named(mocks, ENDPOINT)
    s3 = endpoints.pop("net-s3")
    assert s3["serviceName"] == "com.amazonaws.us-west-2.s3"
    assert s3["vpcEndpointType"] == "Gateway"
    assert s3["routeTableIds"] == [f"net-private-{i}-id" for i in range(3)]
    assert sorted(e["serviceName"] for e in endpoints.values()) == [
        "com.amazonaws.us-west-2.ecr.api",
        "com.amazonaws.us-west-2.ecr.dkr",
        "com.amazonaws.us-west-2.logs",
        "com.amazonaws.us-west-2.sts",
    ]
    for endpoint in endpoints.values():
        assert endpoint["vpcEndpointType"] == "Interface"
        assert endpoint["privateDnsEnabled"] is True
        assert endpoint["subnetIds"] == [f"net-private-{i}-id" for i in range(3)]
        assert endpoint["securityGroupIds"] == ["net-endpoints-id"]
    (group,) = mocks.of_type(SECURITY_GROUP)
    assert group.inputs["vpcId"] == "net-vpc-id"
    (rule,) = group.inputs["ingress"]
    assert rule["protocol"] == "tcp"
    assert rule["fromPort"] == rule["toPort"] == 443
    assert rule["cidrBlocks"] == ["10.0.0.0/16"]


def test_interface_endpoints_are_exactly_those_requested(mocks: Recorder) -> None:
    _build(mocks, interface_endpoints=("ecr.dkr", "sts"), region="eu-central-1")
    names = sorted(e.inputs["serviceName"] for e in mocks.of_type(ENDPOINT))
    assert names == [
        "com.amazonaws.eu-central-1.ecr.dkr",
        "com.amazonaws.eu-central-1.s3",
        "com.amazonaws.eu-central-1.sts",
    ]
    # A region given in the arguments is not looked up.
    assert GET_REGION not in {c.token for c in mocks.calls}


def test_no_interface_endpoints_means_no_security_group(mocks: Recorder) -> None:
    _build(mocks, interface_endpoints=())
    assert [e.name for e in mocks.of_type(ENDPOINT)] == ["net-s3"]
    assert mocks.of_type(SECURITY_GROUP) == []


def test_flow_logs_are_on_by_default(mocks: Recorder) -> None:
    network = _build(mocks)
    (group,) = mocks.of_type(LOG_GROUP)
    assert group.inputs["retentionInDays"] == 90
    (role,) = mocks.of_type(ROLE)
    trust = json.loads(role.inputs["assumeRolePolicy"])
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    (policy,) = mocks.of_type(ROLE_POLICY)
    assert policy.inputs["role"] == "net-flow-logs-id"
    document = json.loads(policy.inputs["policy"])
    writes = document["Statement"][0]
    assert "logs:PutLogEvents" in writes["Action"]
    assert writes["Resource"] == [LOG_GROUP_ARN, f"{LOG_GROUP_ARN}:*"]
    (flow_log,) = mocks.of_type(FLOW_LOG)
    assert flow_log.inputs["vpcId"] == "net-vpc-id"
    assert flow_log.inputs["trafficType"] == "ALL"
    assert flow_log.inputs["logDestinationType"] == "cloud-watch-logs"
    assert flow_log.inputs["logDestination"] == LOG_GROUP_ARN
    assert flow_log.inputs["iamRoleArn"] == ROLE_ARN
    assert network.flow_log is not None


def test_flow_logs_can_be_turned_off(mocks: Recorder) -> None:
    network = _build(mocks, flow_logs=False)
    for typ in (LOG_GROUP, ROLE, ROLE_POLICY, FLOW_LOG):
        assert mocks.of_type(typ) == [], typ
    assert network.flow_log is None


def test_flow_log_retention_is_configurable(mocks: Recorder) -> None:
    _build(mocks, flow_log_retention_days=30)
    (group,) = mocks.of_type(LOG_GROUP)
    assert group.inputs["retentionInDays"] == 30


def test_zone_names_given_are_used_without_a_lookup(mocks: Recorder) -> None:
    network = _build(mocks, zone_names=("us-west-2b", "us-west-2d"))
    subnets = _named(mocks, SUBNET)
    assert len(subnets) == 4
    assert subnets["net-private-1"]["availabilityZone"] == "us-west-2d"
    assert resolve(network.availability_zones) == ["us-west-2b", "us-west-2d"]
    assert GET_ZONES not in {c.token for c in mocks.calls}


def test_an_existing_vpc_is_passed_through(mocks: Recorder) -> None:
    mocks.call_results["aws:ec2/getVpc:getVpc"] = {"id": "vpc-0abc1234", "cidrBlock": "10.8.0.0/16"}
    mocks.call_results["aws:ec2/getSubnet:getSubnet"] = {
        "id": "subnet-0aaa1111",
        "availabilityZone": "us-west-2a",
    }
    private = ("subnet-0aaa1111", "subnet-0bbb2222")
    network = Network(
        "net",
        NetworkArgs(
            cluster_name="fermion-dev",
            vpc_id="vpc-0abc1234",
            private_subnet_ids=private,
            public_subnet_ids=("subnet-0ccc3333",),
        ),
    )
    assert resolve(network.vpc_id) == "vpc-0abc1234"
    assert resolve(network.vpc_cidr) == "10.8.0.0/16"
    assert resolve(network.private_subnet_ids) == list(private)
    assert resolve(network.public_subnet_ids) == ["subnet-0ccc3333"]
    assert resolve(network.availability_zones) == ["us-west-2a"]
    # Node pools pair each subnet with its zone: one entry per subnet, in the same order.
    assert resolve(network.private_subnet_zones) == ["us-west-2a", "us-west-2a"]
    assert resolve(network.nat_gateway_ids) == []
    settle()
    assert [r.typ for r in mocks.resources] == ["fermion:index:Network"]
    assert network.vpc is None
    vpc_call = next(c for c in mocks.calls if c.token == "aws:ec2/getVpc:getVpc")
    assert vpc_call.args["id"] == "vpc-0abc1234"


@pytest.mark.parametrize(
    ("cidr", "prefix_length", "zones", "expected"),
    UNFITTING,
)
def test_subnets_that_do_not_fit_are_a_clear_error(
    cidr: str, prefix_length: int, zones: int, expected: str
) -> None:
    with pytest.raises(SubnetLayoutError) as raised:
        NetworkArgs(
            cluster_name="fermion-dev",
            cidr=cidr,
            subnet_prefix_length=prefix_length,
            availability_zones=zones,
        )
    assert isinstance(raised.value, FermionError)
    message = str(raised.value)
    assert f"subnet_prefix_length {prefix_length}" in message
    assert expected in message


def test_the_largest_layout_that_fits_is_accepted() -> None:
    args = NetworkArgs(
        cluster_name="fermion-dev",
        cidr="10.0.0.0/24",
        subnet_prefix_length=27,
        availability_zones=4,
    )
    layout = args.layout()
    public, private = layout.public_cidrs, layout.private_cidrs
    assert public == ["10.0.0.0/27", "10.0.0.32/27", "10.0.0.64/27", "10.0.0.96/27"]
    assert private == ["10.0.0.128/27", "10.0.0.160/27", "10.0.0.192/27", "10.0.0.224/27"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"cidr": "10.0.0.1/16"}, "network cidr"),
        ({"cidr": "10.0.0.0/8"}, "a VPC's block must be a /16"),
        ({"availability_zones": 1}, "at least two availability zones"),
        ({"zone_names": ("us-west-2a", "us-west-2a")}, "names a zone twice"),
        ({"nat": "shared"}, "is not a NAT mode"),
        ({"interface_endpoints": ("ecr.api", "ec2")}, "Choose from ecr.api"),
        ({"flow_log_retention_days": 45}, "does not accept that retention"),
        ({"private_subnet_ids": ("subnet-0aaa1111",)}, "without the VPC"),
        ({"vpc_id": "vpc-0abc1234"}, "Set private_subnet_ids"),
    ],
)
def test_arguments_that_describe_no_network_are_rejected(
    overrides: dict[str, Any], expected: str
) -> None:
    with pytest.raises(NetworkArgsError, match=expected):
        NetworkArgs(cluster_name="fermion-dev", **overrides)


def test_children_are_parented_to_the_component(mocks: Recorder) -> None:
    network = _build(mocks)
    assert network.vpc is not None
    assert network.flow_log is not None
    vpc_urn = resolve(network.vpc.urn)
    assert "fermion:index:Network$aws:ec2/vpc:Vpc::net-vpc" in vpc_urn
    assert "fermion:index:Network$aws:ec2/flowLog:FlowLog::net-flow-logs" in resolve(
        network.flow_log.urn
    )
    assert resolve(network.urn).endswith("fermion:index:Network::net")


def test_output_types_are_lists(mocks: Recorder) -> None:
    network = _build(mocks)
    for output in (
        network.public_subnet_ids,
        network.private_subnet_ids,
        network.availability_zones,
        network.nat_gateway_ids,
    ):
        assert isinstance(output, pulumi.Output)
        assert isinstance(resolve(output), list)
