"""SystemNodeGroup: the cluster's own CPU nodes, built like a pool but under their own type."""

from __future__ import annotations

import pulumi

from fermion.components.gpu_node_pool import GpuNodePool, GpuNodePoolArgs
from fermion.components.node_group import Taint
from fermion.components.system_node_group import (
    SYSTEM_TAINT,
    SystemNodeGroup,
    SystemNodeGroupArgs,
)
from fermion.environments import load_shapes

from .conftest import Recorder, Registration, core, resolve, settle
from .test_cluster import _cluster, _mock_aws

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
SYSTEM = "fermion:index:SystemNodeGroup"
TAG = "aws:autoscaling/tag:Tag"


def _system(mocks: Recorder) -> SystemNodeGroup:
    _mock_aws(mocks)
    nodes = SystemNodeGroup(
        "system",
        SystemNodeGroupArgs(
            cluster=core(subnet_ids=["subnet-a", "subnet-b"], subnet_zones=["us-west-2a"] * 2),
            shape=load_shapes().get("cpu.medium"),
            tags={"team": "ml"},
        ),
    )
    settle()
    return nodes


def test_the_cluster_builds_its_system_nodes_as_a_system_node_group(
    mocks: Recorder, registrations: list[Registration]
) -> None:
    cluster = _cluster(mocks)
    assert isinstance(cluster.system_nodes, SystemNodeGroup)
    assert not isinstance(cluster.system_nodes, GpuNodePool)
    types = {r.type for r in registrations}
    assert SYSTEM in types
    assert "fermion:index:GpuNodePool" not in types
    assert "fermion:index:Cluster$fermion:index:SystemNodeGroup::dev-system" in resolve(
        cluster.system_nodes.urn
    )


def test_the_former_type_is_an_alias_so_deployed_system_nodes_are_kept(
    mocks: Recorder, registrations: list[Registration]
) -> None:
    nodes = _system(mocks)
    (component,) = [r for r in registrations if r.type == SYSTEM]
    assert component.alias_types == ("fermion:index:GpuNodePool",)
    # Children inherit their parent's aliases, so each keeps its old URN too.
    urn = resolve(nodes.urn)
    children = [r for r in registrations if r.parent == urn]
    assert {r.type for r in children} >= {NODE_GROUP, "aws:iam/role:Role"}


def test_aliases_given_by_the_caller_are_kept(
    mocks: Recorder, registrations: list[Registration]
) -> None:
    _mock_aws(mocks)
    SystemNodeGroup(
        "system",
        SystemNodeGroupArgs(
            cluster=core(subnet_ids=["subnet-a"], subnet_zones=["us-west-2a"]),
            shape=load_shapes().get("cpu.medium"),
        ),
        opts=pulumi.ResourceOptions(aliases=[pulumi.Alias(name="old-system")]),
    )
    settle()
    (component,) = [r for r in registrations if r.type == SYSTEM]
    assert set(component.alias_types) == {"", "fermion:index:GpuNodePool"}


def test_system_nodes_are_built_like_a_cpu_pool_but_kept_for_the_add_ons(
    mocks: Recorder,
) -> None:
    _system(mocks)
    (system,) = mocks.of_type(NODE_GROUP)
    shape = load_shapes().get("cpu.medium")
    GpuNodePool(
        "pool",
        GpuNodePoolArgs(
            cluster=core(subnet_ids=["subnet-a", "subnet-b"], subnet_zones=["us-west-2a"] * 2),
            shape=shape,
            min_size=2,
            max_size=3,
            labels={"fermion.dev/role": "system"},
            tags={"team": "ml"},
        ),
    )
    settle()
    pool = next(r for r in mocks.of_type(NODE_GROUP) if r.name == "pool")
    differ = {"launchTemplate", "labels", "taints"}
    assert {k: v for k, v in system.inputs.items() if k not in differ} == {
        k: v for k, v in pool.inputs.items() if k not in differ
    }
    assert system.inputs["scalingConfig"] == {"minSize": 2, "maxSize": 3, "desiredSize": 2}
    # No shape label for a service to select, and a taint only the add-ons tolerate.
    assert system.inputs["labels"] == {"fermion.dev/role": "system", "fermion.dev/ami": "al2023"}
    assert pool.inputs["labels"]["fermion.dev/shape"] == "cpu.medium"
    assert system.inputs["taints"] == [
        {"key": "CriticalAddonsOnly", "value": "true", "effect": "NO_SCHEDULE"}
    ]
    assert not pool.inputs.get("taints")


def test_the_autoscaler_knows_the_system_taint(mocks: Recorder) -> None:
    nodes = _system(mocks)
    resolve(pulumi.Output.all(*(t.urn for t in nodes.autoscaler_tags)))
    tags = {t.inputs["tag"]["key"]: t.inputs["tag"]["value"] for t in mocks.of_type(TAG)}
    prefix = "k8s.io/cluster-autoscaler/node-template"
    assert tags[f"{prefix}/taint/CriticalAddonsOnly"] == "true:NoSchedule"
    assert f"{prefix}/label/fermion.dev/shape" not in tags
    assert tags[f"{prefix}/label/fermion.dev/role"] == "system"


def test_the_system_taint_is_the_one_eks_managed_add_ons_tolerate() -> None:
    # CoreDNS and the EBS CSI controller tolerate CriticalAddonsOnly as EKS ships them, so
    # they need no configuration to run on the system nodes.
    assert Taint("CriticalAddonsOnly", "true", "NoSchedule") == SYSTEM_TAINT
