from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from fermion.components.gpu_node_pool import GpuNodePool, GpuNodePoolArgs
from fermion.components.node_group import NoZoneOffersShapeError
from fermion.environments import load_shapes

from .conftest import Recorder, core, resolve

SUBNETS = ["subnet-a", "subnet-b", "subnet-c"]
ZONES = ["us-west-2a", "us-west-2b", "us-west-2c"]
OFFERINGS = "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings"


def _offer(mocks: Recorder, offered: dict[str, list[str]]) -> None:
    types, zones = [], []
    for zone, instance_types in offered.items():
        for instance_type in instance_types:
            types.append(instance_type)
            zones.append(zone)
    mocks.call_results[OFFERINGS] = {
        "instanceTypes": types,
        "locations": zones,
        "locationTypes": ["availability-zone"] * len(zones),
        "id": "us-west-2",
        "region": "us-west-2",
    }
    mocks.outputs["aws:eks/nodeGroup:NodeGroup"] = {
        "resources": [{"autoscalingGroups": [{"name": "eks-gpu-asg"}]}],
        "nodeGroupName": "gpu",
    }
    mocks.outputs["aws:ec2/launchTemplate:LaunchTemplate"] = {"latestVersion": 3}
    mocks.outputs["aws:iam/role:Role"] = {"arn": "arn:aws:iam::123456789012:role/node"}


def _pool(shape: str, **overrides: Any) -> GpuNodePoolArgs:
    values: dict[str, Any] = {
        "cluster": core(subnet_ids=SUBNETS, subnet_zones=ZONES),
        "shape": load_shapes().get(shape),
    }
    values.update(overrides)
    return GpuNodePoolArgs(**values)


def _node_group(mocks: Recorder) -> dict[str, Any]:
    (group,) = mocks.of_type("aws:eks/nodeGroup:NodeGroup")
    return dict(group.inputs)


def test_a_gpu_pool_gets_the_nvidia_ami_taint_and_labels(mocks: Recorder) -> None:
    _offer(mocks, {zone: ["g6.xlarge", "g6.2xlarge"] for zone in ZONES})
    pool = GpuNodePool("gpu", _pool("gpu.l4", min_size=0, max_size=4))
    resolve(pool.node_group.urn)
    group = _node_group(mocks)
    assert group["amiType"] == "AL2023_x86_64_NVIDIA"
    assert group["instanceTypes"] == ["g6.xlarge", "g6.2xlarge"]
    assert group["capacityType"] == "ON_DEMAND"
    assert group["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert group["labels"]["fermion.dev/shape"] == "gpu.l4"
    assert group["labels"]["fermion.dev/gpu-model"] == "L4"
    assert group["labels"]["fermion.dev/ami"] == "al2023"
    # cluster-autoscaler knows a labelled node is a GPU node before its GPUs are reported.
    assert group["labels"]["k8s.amazonaws.com/accelerator"] == "nvidia-l4"
    assert group["scalingConfig"] == {"minSize": 0, "maxSize": 4, "desiredSize": 0}
    assert group["launchTemplate"]["version"] == "3"


def test_subnets_exclude_zones_that_do_not_offer_the_types(mocks: Recorder) -> None:
    # us-west-2c sells only one of the two types: the pool stays out of it.
    _offer(
        mocks,
        {
            "us-west-2a": ["g6.xlarge", "g6.2xlarge"],
            "us-west-2b": ["g6.xlarge", "g6.2xlarge"],
            "us-west-2c": ["g6.xlarge"],
        },
    )
    pool = GpuNodePool("gpu", _pool("gpu.l4"))
    assert resolve(pool.subnet_ids) == ["subnet-a", "subnet-b"]
    resolve(pool.node_group.urn)
    assert _node_group(mocks)["subnetIds"] == ["subnet-a", "subnet-b"]
    (call,) = [c for c in mocks.calls if c.token == OFFERINGS]
    assert call.args["filters"] == [
        {"name": "instance-type", "values": ["g6.xlarge", "g6.2xlarge"]}
    ]


def test_no_zone_offering_the_shape_is_a_clear_error() -> None:
    from fermion.components.node_group import _subnets_in_offering_zones

    with pytest.raises(
        NoZoneOffersShapeError, match=r"no subnet is in a zone that offers p5\.48xlarge"
    ):
        _subnets_in_offering_zones(
            "h100", ["p5.48xlarge"], SUBNETS, ZONES, ["g6.xlarge"], ["us-west-2a"]
        )


def test_imdsv2_and_the_disk(mocks: Recorder) -> None:
    _offer(mocks, {zone: ["g5.xlarge", "g5.2xlarge"] for zone in ZONES})
    pool = GpuNodePool("gpu", _pool("gpu.a10", disk_gib=500, ami="bottlerocket", capacity="spot"))
    resolve(pool.node_group.urn)
    (template,) = mocks.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    metadata = template.inputs["metadataOptions"]
    assert metadata["httpTokens"] == "required"
    assert metadata["httpPutResponseHopLimit"] == 1
    (device,) = template.inputs["blockDeviceMappings"]
    assert device["deviceName"] == "/dev/xvdb"  # Bottlerocket's data volume
    assert device["ebs"]["volumeSize"] == 500
    group = _node_group(mocks)
    assert group["amiType"] == "BOTTLEROCKET_x86_64_NVIDIA"
    assert group["capacityType"] == "SPOT"


def test_scale_from_zero_tags(mocks: Recorder) -> None:
    _offer(mocks, {zone: ["p5.48xlarge"] for zone in ZONES})
    pool = GpuNodePool("h100", _pool("gpu.h100-sxm"))
    resolve(pulumi.Output.all(*(t.urn for t in pool.autoscaler_tags)))
    tags = {}
    for tag in mocks.of_type("aws:autoscaling/tag:Tag"):
        assert tag.inputs["autoscalingGroupName"] == "eks-gpu-asg"
        tags[tag.inputs["tag"]["key"]] = tag.inputs["tag"]["value"]
        assert tag.inputs["tag"]["propagateAtLaunch"] is False
    prefix = "k8s.io/cluster-autoscaler/node-template"
    assert tags[f"{prefix}/resources/nvidia.com/gpu"] == "8"
    assert tags[f"{prefix}/taint/nvidia.com/gpu"] == "true:NoSchedule"
    assert tags[f"{prefix}/label/fermion.dev/shape"] == "gpu.h100-sxm"
    assert tags[f"{prefix}/label/k8s.amazonaws.com/accelerator"] == "nvidia-h100"
    assert tags["k8s.io/cluster-autoscaler/fermion-dev"] == "owned"
    assert tags["k8s.io/cluster-autoscaler/enabled"] == "true"


def test_a_cpu_pool_has_no_taint_and_the_standard_ami(mocks: Recorder) -> None:
    _offer(mocks, {zone: ["m7i.2xlarge", "m6i.2xlarge"] for zone in ZONES})
    pool = GpuNodePool("cpu", _pool("cpu.large"))
    resolve(pool.node_group.urn)
    group = _node_group(mocks)
    assert group["amiType"] == "AL2023_x86_64_STANDARD"
    assert not group.get("taints")
    assert "fermion.dev/gpu-model" not in group["labels"]
    assert "k8s.amazonaws.com/accelerator" not in group["labels"]


def test_the_node_role_and_its_policies(mocks: Recorder) -> None:
    _offer(mocks, {zone: ["g6.xlarge", "g6.2xlarge"] for zone in ZONES})
    pool = GpuNodePool("gpu", _pool("gpu.l4"))
    assert resolve(pool.node_role_arn) == "arn:aws:iam::123456789012:role/node"
    resolve(pulumi.Output.all(*(a.urn for a in pool.policy_attachments)))
    (role,) = mocks.of_type("aws:iam/role:Role")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    attached = {
        a.inputs["policyArn"]
        for a in mocks.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    }
    assert "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy" in attached
    assert "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly" in attached


def test_a_given_node_role_is_used_as_is(mocks: Recorder) -> None:
    _offer(mocks, {zone: ["g6.xlarge", "g6.2xlarge"] for zone in ZONES})
    pool = GpuNodePool(
        "gpu", _pool("gpu.l4", node_role_arn="arn:aws:iam::123456789012:role/shared")
    )
    resolve(pool.node_group.urn)
    assert not mocks.of_type("aws:iam/role:Role")
    assert _node_group(mocks)["nodeRoleArn"] == "arn:aws:iam::123456789012:role/shared"


def test_children_are_parented_to_the_pool(mocks: Recorder) -> None:
    _offer(mocks, {zone: ["g6.xlarge", "g6.2xlarge"] for zone in ZONES})
    pool = GpuNodePool("gpu", _pool("gpu.l4"))
    assert "fermion:index:GpuNodePool$aws:eks/nodeGroup:NodeGroup::gpu" in resolve(
        pool.node_group.urn
    )
