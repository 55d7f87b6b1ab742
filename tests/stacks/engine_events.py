"""Engine events built with the Automation API's own event types, as the engine reports them.

Custom resources carry a provider reference and `custom: true`; components carry neither (the
engine leaves `custom` out when false).
"""

from __future__ import annotations

from collections.abc import Mapping

from pulumi.automation.events import (
    DiagnosticEvent,
    EngineEvent,
    OpType,
    ResOpFailedEvent,
    ResourcePreEvent,
    ResOutputsEvent,
    StepEventMetadata,
    StepEventStateMetadata,
    SummaryEvent,
)

PROVIDER = "urn:pulumi:dev::fermion::pulumi:providers:aws::default_7_51_1::0a1b2c3d"
BUCKET = "aws:s3/bucket:Bucket"
CLUSTER = "aws:eks/cluster:Cluster"
REPOSITORY = "aws:ecr/repository:Repository"
KEY = "aws:kms/key:Key"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SUBNET = "aws:ec2/subnet:Subnet"
PLATFORM = "fermion:index:Platform"


def urn(type_: str, name: str) -> str:
    return f"urn:pulumi:dev::fermion::{type_}::{name}"


def step(op: str, type_: str, name: str, custom: bool = True) -> StepEventMetadata:
    """The metadata of one step, with the old state for deletes and the new one otherwise."""
    state = StepEventStateMetadata(
        type=type_,
        urn=urn(type_, name),
        id=f"{name}-id" if custom else "",
        parent=urn("pulumi:pulumi:Stack", "fermion-dev"),
        provider=PROVIDER if custom else "",
        custom=True if custom else None,
    )
    deleting = op in ("delete", "delete-replaced", "discard")
    return StepEventMetadata(
        op=OpType(op),
        urn=urn(type_, name),
        type=type_,
        provider=PROVIDER if custom else "",
        old=state if deleting or op in ("update", "replace", "same") else None,
        new=None if deleting else state,
    )


def pre(metadata: StepEventMetadata, sequence: int = 0, planning: bool = False) -> EngineEvent:
    return EngineEvent(
        sequence=sequence,
        timestamp=0,
        resource_pre_event=ResourcePreEvent(metadata, planning=planning or None),
    )


def outputs(metadata: StepEventMetadata, sequence: int = 0, planning: bool = False) -> EngineEvent:
    return EngineEvent(
        sequence=sequence,
        timestamp=0,
        res_outputs_event=ResOutputsEvent(metadata, planning=planning or None),
    )


def failed(metadata: StepEventMetadata, sequence: int = 0) -> EngineEvent:
    return EngineEvent(
        sequence=sequence,
        timestamp=0,
        res_op_failed_event=ResOpFailedEvent(metadata, status=1, steps=1),
    )


def diagnostic(
    severity: str, message: str, resource: str | None = None, ephemeral: bool = False
) -> EngineEvent:
    return EngineEvent(
        sequence=0,
        timestamp=0,
        diagnostic_event=DiagnosticEvent(
            message=message,
            color="never",
            severity=severity,
            urn=resource,
            ephemeral=ephemeral or None,
        ),
    )


def summary(
    changes: Mapping[str, int], duration_s: int = 0, maybe_corrupt: bool = False
) -> EngineEvent:
    return EngineEvent(
        sequence=0,
        timestamp=0,
        summary_event=SummaryEvent(
            maybe_corrupt=maybe_corrupt,
            duration_seconds=duration_s,
            resource_changes={OpType(op): n for op, n in changes.items()},
            policy_packs={},
        ),
    )


def done(op: str, type_: str, name: str, planning: bool = False) -> list[EngineEvent]:
    """The two events of one step that ran to its end."""
    metadata = step(op, type_, name)
    return [pre(metadata, planning=planning), outputs(metadata, planning=planning)]
