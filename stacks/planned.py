"""What a plan records of each resource the stack program registers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PlannedResource:
    """One registered resource: a component (custom False) or a cloud or Kubernetes object."""

    urn: str
    type: str
    name: str
    parent: str | None
    inputs: dict[str, Any]
    custom: bool
