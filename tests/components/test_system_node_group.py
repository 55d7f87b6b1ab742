"""SystemNodeGroup: the cluster's own CPU nodes, built like a pool but under their own type."""

from __future__ import annotations

import pulumi

from fermion.components.gpu_node_pool import GpuNodePool, GpuNodePoolArgs
from fermion.components.system_node_group import SystemNodeGroup, SystemNodeGroupArgs
from fermion.environments import load_shapes

from .conftest import Recorder, Registration, core, resolve, settle
from .test_cluster import _cluster, _mock_aws

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
SYSTEM = "fermion:index:SystemNodeGroup"


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


def test_system_nodes_are_built_like_a_cpu_pool_of_the_same_shape(mocks: Recorder) -> None:
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
    assert {k: v for k, v in system.inputs.items() if k != "launchTemplate"} == {
        k: v for k, v in pool.inputs.items() if k != "launchTemplate"
    }
    assert system.inputs["labels"]["fermion.dev/role"] == "system"
    assert system.inputs["scalingConfig"] == {"minSize": 2, "maxSize": 3, "desiredSize": 2}
