"""examples/existing_cluster: fermion's components in a program of one's own, on a cluster
another stack owns, run under Pulumi's mocks."""

from __future__ import annotations

import asyncio
import json
import runpy
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest
from pulumi.runtime.stack import wait_for_rpcs

from fermion.policies import Resource, evaluate
from fermion.stacks.plan import OfflineAnswers

from ..conftest import REPO

PROGRAM = REPO / "examples" / "existing_cluster" / "__main__.py"


class _Answers(OfflineAnswers):
    def __init__(self) -> None:
        super().__init__("us-west-2")
        self.registered: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.registered.append(args)
        return super().new_resource(args)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        if args.token == "aws:eks/getCluster:getCluster":
            return {
                "name": args.args["name"],
                "endpoint": "https://XYZ.gr7.us-west-2.eks.amazonaws.com",
                "version": "1.34",
                "certificateAuthorities": [{"data": "Q0E="}],
                "id": args.args["name"],
            }, []
        return super().call(args)


@pytest.fixture
def answers() -> Iterator[_Answers]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    recorder = _Answers()
    pulumi.runtime.set_mocks(recorder, project="existing-cluster", stack="dev", preview=True)
    pulumi.runtime.set_all_config(
        {
            "aws:region": "us-west-2",
            "existing-cluster:cluster": "team-cluster",
            "existing-cluster:subnets": json.dumps(
                [
                    {"id": "subnet-0a1b2c3d4e5f60718", "zone": "us-west-2a"},
                    {"id": "subnet-0a1b2c3d4e5f60719", "zone": "us-west-2b"},
                ]
            ),
            "existing-cluster:image": "123456789012.dkr.ecr.us-west-2.amazonaws.com/r@sha256:ab",
            "existing-cluster:model": "s3://my-models/embed/1/",
        }
    )
    yield recorder
    asyncio.set_event_loop(None)
    loop.close()


def test_the_components_join_a_cluster_they_do_not_create(answers: _Answers) -> None:
    runpy.run_path(str(PROGRAM), run_name="__main__")
    asyncio.get_event_loop().run_until_complete(wait_for_rpcs())
    types = [r.typ for r in answers.registered]
    assert "aws:eks/cluster:Cluster" not in types
    assert "aws:ec2/vpc:Vpc" not in types
    (group,) = [r for r in answers.registered if r.typ == "aws:eks/nodeGroup:NodeGroup"]
    assert group.inputs["clusterName"] == "team-cluster"
    assert group.inputs["amiType"] == "AL2023_x86_64_NVIDIA"
    charts = {r.inputs["chart"] for r in answers.registered if r.typ.endswith(":Release")}
    assert {"keda", "keda-add-ons-http", "nvidia-device-plugin", "cluster-autoscaler"} <= charts
    (scaler,) = [r for r in answers.registered if r.typ.endswith(":HTTPScaledObject")]
    assert scaler.inputs["spec"]["pathPrefixes"] == ["/v2/models/embed"]
    associations = [r for r in answers.registered if r.typ.endswith(":PodIdentityAssociation")]
    assert {a.inputs["clusterName"] for a in associations} == {"team-cluster"}
    assert ("inference", "embed") in {
        (a.inputs["namespace"], a.inputs["serviceAccount"]) for a in associations
    }


def test_the_policy_rules_run_over_a_program_of_ones_own(answers: _Answers) -> None:
    runpy.run_path(str(PROGRAM), run_name="__main__")
    asyncio.get_event_loop().run_until_complete(wait_for_rpcs())
    resources = [
        Resource(f"urn:pulumi:dev::existing-cluster::{r.typ}::{r.name}", r.typ, r.name, r.inputs)
        for r in answers.registered
        if r.custom
    ]
    found = {(f.policy, f.urn.rpartition("::")[2]) for f in evaluate(resources)}
    # The only finding: this config's image digest (sha256:ab) is cut short, so it pins nothing.
    assert found == {("image-pinned", "embed-deployment")}
