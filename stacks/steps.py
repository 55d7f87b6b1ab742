"""Steps of a Pulumi operation, as the engine's events describe them.

The engine reports each step on a resource (create, update, delete, replace, ...) in a
`ResourcePreEvent` before it runs and a `ResOutputsEvent` (or `ResOpFailedEvent`) after. Both
carry a `StepEventMetadata`; `Step` is the part of it fermion shows and decides on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pulumi.automation.events import StepEventMetadata

__all__ = ["REPLACE_OPS", "Step", "op_name", "urn_name"]

# The three steps of one replacement; `replace` is the logical one the engine counts.
REPLACE_OPS = frozenset({"replace", "create-replacement", "delete-replaced"})


def op_name(op: object) -> str:
    """The operation as the engine spells it ("create", "delete-replaced", ...)."""
    # OpType is a str Enum: its value is the engine's spelling.
    value = getattr(op, "value", op)
    return str(value)


def urn_name(urn: str) -> str:
    """A resource's name, the last part of its URN."""
    return urn.rsplit("::", 1)[-1] if "::" in urn else urn


@dataclass(frozen=True)
class Step:
    """One step on one resource: what happens to it, its type token, name and URN."""

    op: str
    type: str
    name: str
    urn: str
    custom: bool = True

    @classmethod
    def from_metadata(cls, metadata: StepEventMetadata) -> Step:
        """The step an event's metadata describes."""
        state = metadata.new if metadata.new is not None else metadata.old
        if state is not None and state.custom is not None:
            custom = bool(state.custom)
        else:
            # The engine leaves `custom` out when false; only custom resources have a provider.
            custom = bool(metadata.provider)
        return cls(
            op=op_name(metadata.op),
            type=metadata.type,
            name=urn_name(metadata.urn),
            urn=metadata.urn,
            custom=custom,
        )
