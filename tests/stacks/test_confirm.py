"""Which preview results need a person's yes, decided on steps the engine reports with the SDK's
own event types."""

from __future__ import annotations

import pytest

from fermion.stacks.confirm import STATEFUL_TYPES, StepRecorder, steps_to_confirm
from fermion.stacks.steps import Step

from .engine_events import (
    BUCKET,
    CLUSTER,
    DEPLOYMENT,
    KEY,
    PLATFORM,
    REPOSITORY,
    SUBNET,
    diagnostic,
    pre,
    step,
    summary,
)


def recorded(*steps: tuple[str, str, str]) -> StepRecorder:
    recorder = StepRecorder()
    for op, type_, name in steps:
        recorder(pre(step(op, type_, name), planning=True))
    return recorder


def test_a_replaced_bucket_needs_confirmation() -> None:
    (found,) = recorded(("replace", BUCKET, "dev-models")).to_confirm()
    assert found.describe() == "replace S3 bucket dev-models (aws:s3/bucket:Bucket)"


def test_an_updated_deployment_does_not() -> None:
    assert recorded(("update", DEPLOYMENT, "embed")).to_confirm() == []


@pytest.mark.parametrize("type_", [BUCKET, REPOSITORY, CLUSTER, KEY])
@pytest.mark.parametrize("op", ["replace", "delete", "create-replacement", "delete-replaced"])
def test_every_stateful_type_needs_confirmation_to_go(type_: str, op: str) -> None:
    (found,) = recorded((op, type_, "x")).to_confirm()
    assert found.kind == STATEFUL_TYPES[type_]
    assert found.action == ("delete" if op == "delete" else "replace")


@pytest.mark.parametrize("op", ["create", "update", "same", "read", "refresh"])
def test_a_stateful_resource_that_stays_needs_none(op: str) -> None:
    assert recorded((op, BUCKET, "dev-models"), (op, CLUSTER, "dev-cluster")).to_confirm() == []


@pytest.mark.parametrize("type_", [DEPLOYMENT, SUBNET, PLATFORM])
def test_replacing_or_deleting_what_holds_no_data_needs_none(type_: str) -> None:
    assert recorded(("replace", type_, "a"), ("delete", type_, "b")).to_confirm() == []


def test_the_three_steps_of_one_replacement_are_one_entry_in_plan_order() -> None:
    recorder = recorded(
        ("create-replacement", CLUSTER, "dev-cluster"),
        ("replace", CLUSTER, "dev-cluster"),
        ("update", DEPLOYMENT, "embed"),
        ("delete", REPOSITORY, "dev-runtime"),
        ("delete-replaced", CLUSTER, "dev-cluster"),
    )
    assert [s.describe() for s in recorder.to_confirm()] == [
        "replace EKS cluster dev-cluster (aws:eks/cluster:Cluster)",
        "delete ECR repository dev-runtime (aws:ecr/repository:Repository)",
    ]


def test_the_recorder_keeps_steps_only_and_counts_custom_resources() -> None:
    recorder = recorded(
        ("delete", BUCKET, "dev-models"),
        ("delete", SUBNET, "dev-private-a"),
    )
    recorder(pre(step("delete", PLATFORM, "dev", custom=False)))
    recorder(diagnostic("error", "not a step"))
    recorder(summary({"delete": 3}))
    assert [s.name for s in recorder.steps] == ["dev-models", "dev-private-a", "dev"]
    assert recorder.count("delete") == 2
    assert recorder.steps[-1] == Step(
        "delete", PLATFORM, "dev", step("delete", PLATFORM, "dev", custom=False).urn, custom=False
    )


def test_plain_steps_work_without_events() -> None:
    steps = [Step("delete", KEY, "dev-secrets", "urn:k"), Step("update", BUCKET, "b", "urn:b")]
    assert [s.describe() for s in steps_to_confirm(steps)] == [
        "delete KMS key dev-secrets (aws:kms/key:Key)"
    ]
