"""What the rules read (a resource's type and inputs) and what they say (findings)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ADVISORY",
    "MANDATORY",
    "UNKNOWN_PREFIX",
    "Finding",
    "Level",
    "Resource",
    "Rule",
    "is_unknown",
]

Level = Literal["mandatory", "advisory"]
MANDATORY: Level = "mandatory"
ADVISORY: Level = "advisory"
# How the offline plan writes a value that only `pulumi up` will know; placeholders for ids
# and ARNs start the same way, followed by the resource's name.
UNKNOWN_PREFIX = "(known after up"


def is_unknown(value: Any) -> bool:
    """Whether `value` is a value the engine does not know yet (None counts as not set)."""
    return isinstance(value, str) and value.startswith(UNKNOWN_PREFIX) and value.endswith(")")


@dataclass(frozen=True)
class Resource:
    """One resource as the rules see it: its URN, type token, name, parent URN and inputs
    (camelCase keys, as the engine and `fermion plan --json` write them)."""

    urn: str
    type: str
    name: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    parent: str | None = None

    def get(self, *path: str | int) -> Any:
        """The input at `path` (keys and list indexes), or None where any step is missing."""
        value: Any = self.inputs
        for step in path:
            if (
                isinstance(step, int)
                and isinstance(value, list)
                and -len(value) <= step < len(value)
            ):
                value = value[step]
            elif isinstance(step, str) and isinstance(value, Mapping):
                value = value.get(step)
            else:
                return None
        return value


@dataclass(frozen=True)
class Finding:
    """A policy's verdict on one resource; `message` says what is wrong and how to fix it."""

    policy: str
    level: Level
    urn: str
    message: str
    waived: str | None = None  # the environment's reason, when an advisory finding is waived


# A rule's check: one resource, the whole stack (for rules that join resources), and the
# messages of its violations on that resource.
Check = Callable[[Resource, Sequence[Resource]], Iterable[str]]


@dataclass(frozen=True)
class Rule:
    """One policy: a name, a level, what it asks for, the types it looks at and its check."""

    name: str
    level: Level
    description: str
    types: tuple[str, ...]
    check: Check

    def applies_to(self, resource: Resource) -> bool:
        """Whether the rule looks at resources of this type."""
        return resource.type in self.types

    def findings(self, resource: Resource, stack: Sequence[Resource]) -> Iterator[Finding]:
        """This rule's findings on one resource of `stack`."""
        if not self.applies_to(resource):
            return
        for message in self.check(resource, stack):
            yield Finding(self.name, self.level, resource.urn, message)
