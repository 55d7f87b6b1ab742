"""Platform: a whole environment composed from its spec, under Pulumi's mocks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fermion.components.from_spec import ENVIRONMENT_TAG
from fermion.components.platform import Platform, PlatformArgs
from fermion.environments import load_shapes
from fermion.environments.stack_files import parse_environment

from .conftest import Recorder, Registration, schedulable, settle
from .test_cluster import _mock_aws

SUBNETS = ["subnet-0a1b2c3d4e5f60718", "subnet-0a1b2c3d4e5f60719"]
RELEASE = "kubernetes:helm.sh/v3:Release"


def _answer_lookups(mocks: Recorder) -> None:
    _mock_aws(mocks)
    mocks.outputs["aws:ecr/repository:Repository"] = {
        "repositoryUrl": "123456789012.dkr.ecr.us-west-2.amazonaws.com/fermion/runtime"
    }
    zones = ["us-west-2a", "us-west-2b", "us-west-2c"]
    mocks.call_results["aws:ec2/getSubnet:getSubnet"] = {"availabilityZone": "us-west-2a"}
    mocks.call_results["aws:ec2/getVpc:getVpc"] = {"cidrBlock": "10.9.0.0/16"}
    mocks.call_results["aws:index/getAvailabilityZones:getAvailabilityZones"] = {"names": zones}
    every = list(load_shapes().instance_types)
    mocks.call_results["aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings"] = {
        "instanceTypes": [t for _ in zones for t in every],
        "locations": [zone for zone in zones for _ in every],
    }
    mocks.call_results["aws:eks/getAddonVersion:getAddonVersion"] = {"version": "v1-eksbuild.1"}
    mocks.call_results["aws:index/getCallerIdentity:getCallerIdentity"] = {
        "accountId": "123456789012"
    }


def _platform(mocks: Recorder, tmp_path: Path, data: dict[str, Any]) -> Platform:
    _answer_lookups(mocks)
    spec = parse_environment(data, "qa", region="us-west-2")
    platform = Platform("qa", PlatformArgs(spec, context_dir=tmp_path))
    settle()
    return platform


def test_an_existing_vpc_is_used_and_nothing_is_created_in_it(
    mocks: Recorder, tmp_path: Path
) -> None:
    _platform(
        mocks,
        tmp_path,
        {"network": {"vpc_id": "vpc-0a1b2c3d4e5f60718", "private_subnet_ids": SUBNETS}},
    )
    assert not mocks.of_type("aws:ec2/vpc:Vpc")
    assert not mocks.of_type("aws:ec2/subnet:Subnet")
    assert not mocks.of_type("aws:ec2/natGateway:NatGateway")
    (cluster,) = mocks.of_type("aws:eks/cluster:Cluster")
    assert cluster.inputs["vpcConfig"]["subnetIds"] == SUBNETS


def test_a_cpu_only_environment_installs_no_gpu_daemons(mocks: Recorder, tmp_path: Path) -> None:
    _platform(mocks, tmp_path, {"node_pools": [{"name": "cpu", "shape": "cpu.large"}]})
    releases = {r.inputs["chart"] for r in mocks.of_type(RELEASE)}
    assert "nvidia-device-plugin" not in releases
    assert {"keda", "cluster-autoscaler", "metrics-server"} <= releases


def test_gpu_pools_bring_the_device_plugin_and_the_lb_controller_is_opt_in(
    mocks: Recorder, tmp_path: Path
) -> None:
    _platform(
        mocks,
        tmp_path,
        {
            "cluster": {"load_balancer_controller": True},
            "node_pools": [{"name": "l4", "shape": "gpu.l4"}],
        },
    )
    releases = {r.inputs["chart"] for r in mocks.of_type(RELEASE)}
    assert {"nvidia-device-plugin", "aws-load-balancer-controller"} <= releases


def test_every_tagged_resource_names_its_environment(mocks: Recorder, tmp_path: Path) -> None:
    _platform(mocks, tmp_path, {"tags": {"team": "ml"}})
    tagged = [r for r in mocks.resources if isinstance(r.inputs.get("tags"), dict)]
    assert len(tagged) > 20
    for resource in tagged:
        assert resource.inputs["tags"][ENVIRONMENT_TAG] == "qa", resource.name
        assert resource.inputs["tags"]["team"] == "ml", resource.name


def test_each_service_gets_a_runtime_image_rendered_where_asked(
    mocks: Recorder, tmp_path: Path
) -> None:
    platform = _platform(
        mocks,
        tmp_path,
        {
            "node_pools": [{"name": "cpu", "shape": "cpu.large"}],
            "services": [{"name": "tabular", "shape": "cpu.large", "inputs": ["x:FP32:-1,4"]}],
        },
    )
    assert set(platform.runtime_images) == {"tabular"}
    assert (tmp_path / "qa-tabular" / "Dockerfile").is_file()
    (image,) = mocks.of_type("docker-build:index:Image")
    assert image.inputs["labels"]["dev.fermion.image"] == "torch-cpu"


def test_no_service_can_land_on_the_system_nodes(mocks: Recorder, tmp_path: Path) -> None:
    # As in prod: the system nodes and a CPU pool share a shape, and a service asks for it.
    _platform(
        mocks,
        tmp_path,
        {
            "cluster": {"system_nodes": {"shape": "cpu.large"}},
            "node_pools": [{"name": "cpu", "shape": "cpu.large", "size": {"min": 1, "max": 4}}],
            "services": [
                {
                    "name": "tabular",
                    "shape": "cpu.large",
                    "inputs": ["x:FP32:-1,4"],
                    "replicas": {"min": 1, "max": 4},
                }
            ],
        },
    )
    groups = {g.name: g.inputs for g in mocks.of_type("aws:eks/nodeGroup:NodeGroup")}
    assert groups["qa-cluster-system"]["instanceTypes"] == groups["qa-cpu"]["instanceTypes"]
    (deployment,) = mocks.of_type("kubernetes:apps/v1:Deployment")
    pod = deployment.inputs["spec"]["template"]["spec"]
    assert schedulable(pod, groups["qa-cpu"])
    assert not schedulable(pod, groups["qa-cluster-system"])


def test_the_implicit_tenant_keeps_the_namespace_stacks_declared_before_tenants(
    mocks: Recorder, registrations: list[Registration], tmp_path: Path
) -> None:
    platform = _platform(mocks, tmp_path, {})
    (namespace,) = [
        r
        for r in registrations
        if r.type == "kubernetes:core/v1:Namespace" and r.name == "qa-tenant-default-namespace"
    ]
    assert namespace.alias_names == ("qa-inference",)
    assert set(platform.tenants) == {"default"}
    assert platform.outputs["namespaces"] == {"default": "inference"}


def test_declared_tenants_are_new_and_hold_their_services(
    mocks: Recorder, registrations: list[Registration], tmp_path: Path
) -> None:
    data = {
        "tenants": [{"name": "search", "quota": {"cpu": 64, "memory_gib": 256, "pods": 20}}],
        "node_pools": [{"name": "cpu", "shape": "cpu.large"}],
        "services": [
            {
                "name": "rank",
                "shape": "cpu.large",
                "tenant": "search",
                "model": {"format": "export"},
            }
        ],
    }
    _platform(mocks, tmp_path, data)
    namespaces = [r for r in registrations if r.type == "kubernetes:core/v1:Namespace"]
    assert all(r.alias_names == () for r in namespaces)
    (deployment,) = mocks.of_type("kubernetes:apps/v1:Deployment")
    assert deployment.inputs["metadata"]["namespace"] == "search"
