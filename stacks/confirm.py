"""Which planned steps need a person's yes: replacing or deleting a resource that holds state.

An S3 bucket holds models, an ECR repository images, an EKS cluster every workload and a KMS key
the only way to read what it encrypted. A replacement deletes the old one, so `fermion up` runs
a preview first, collects its steps with a `StepRecorder`, and asks before going on when
`steps_to_confirm` finds any. Updates in place and everything stateless go ahead unasked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fermion.stacks.steps import REPLACE_OPS, Step

if TYPE_CHECKING:
    from pulumi.automation.events import EngineEvent

__all__ = [
    "DESTRUCTIVE_OPS",
    "STATEFUL_TYPES",
    "DestructiveStep",
    "StepRecorder",
    "steps_to_confirm",
]

STATEFUL_TYPES: Mapping[str, str] = {
    "aws:s3/bucket:Bucket": "S3 bucket",
    "aws:s3/bucketV2:BucketV2": "S3 bucket",
    "aws:ecr/repository:Repository": "ECR repository",
    "aws:eks/cluster:Cluster": "EKS cluster",
    "aws:kms/key:Key": "KMS key",
}
"""Resource types, by type token, whose loss loses data: what they are called for people."""

DESTRUCTIVE_OPS = frozenset({"delete", *REPLACE_OPS})
"""Steps that end a resource's life: a delete, or any of the three steps of a replacement."""


@dataclass(frozen=True)
class DestructiveStep:
    """A stateful resource that the operation would delete or replace."""

    action: str  # "delete" or "replace"
    kind: str  # "S3 bucket", ...
    type: str
    name: str
    urn: str

    def describe(self) -> str:
        """One line for people: `replace S3 bucket dev-models (aws:s3/bucket:Bucket)`."""
        return f"{self.action} {self.kind} {self.name} ({self.type})"


def steps_to_confirm(steps: Iterable[Step]) -> list[DestructiveStep]:
    """The steps among `steps` that delete or replace a stateful resource, one per resource,
    in the order the engine planned them."""
    found: dict[str, DestructiveStep] = {}
    for step in steps:
        kind = STATEFUL_TYPES.get(step.type)
        if kind is None or step.op not in DESTRUCTIVE_OPS:
            continue
        action = "replace" if step.op in REPLACE_OPS else "delete"
        known = found.get(step.urn)
        if known is None or (action == "replace" and known.action != "replace"):
            found[step.urn] = DestructiveStep(action, kind, step.type, step.name, step.urn)
    return list(found.values())


class StepRecorder:
    """Records every step a preview plans. Pass it as `on_event`; the engine calls it from its
    own threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: list[Step] = []

    def __call__(self, event: EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is None:
            return
        step = Step.from_metadata(pre.metadata)
        with self._lock:
            self._steps.append(step)

    @property
    def steps(self) -> tuple[Step, ...]:
        """The planned steps, in the order they were reported."""
        with self._lock:
            return tuple(self._steps)

    def count(self, op: str) -> int:
        """How many custom resources the plan gives the operation `op` ("delete", ...)."""
        return sum(1 for s in self.steps if s.op == op and s.custom)

    def to_confirm(self) -> list[DestructiveStep]:
        """The planned steps that need a person's yes."""
        return steps_to_confirm(self.steps)
