"""How a rule finds the resources that belong together (a bucket and its access block, a
node group and its launch template, a role and its policies) from inputs alone."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from fermion.policies.findings import Resource, is_unknown

__all__ = ["as_list", "attached", "placeholder", "policy_document", "refers_to", "statements"]


def placeholder(name: str) -> str:
    """The offline plan's stand-in for the id of the resource named `name`."""
    return f"(known after up: {name})"


def refers_to(value: Any, target: Resource, source: Resource, *name_keys: str) -> bool:
    """Whether `value`, an input of `source`, names `target`: its name input (`name_keys`),
    its URN, its placeholder id or ARN, or, where the engine does not know the value yet, a
    target beside `source` under the same parent component."""
    if not isinstance(value, str):
        return False
    if placeholder(target.name) in value:
        return True
    if is_unknown(value):
        return source.parent == target.parent
    names = [target.get(key) for key in name_keys]
    return value == target.urn or any(isinstance(n, str) and n and value.endswith(n) for n in names)


def attached(
    target: Resource, stack: Sequence[Resource], types: Sequence[str], key: str, *name_keys: str
) -> list[Resource]:
    """The resources of `types` in `stack` whose input `key` refers to `target`. Where the
    reference is not known yet, a resource beside it counts only if it shares its name or
    `target` is the only one of its type there."""
    twins = [r for r in stack if r.type == target.type and r.parent == target.parent]
    found = []
    for r in stack:
        value = r.get(key)
        if r.type not in types or not refers_to(value, target, r, *name_keys):
            continue
        guessed = is_unknown(value) and placeholder(target.name) not in str(value)
        if not guessed or r.name == target.name or len(twins) == 1:
            found.append(r)
    return found


def policy_document(value: Any) -> dict[str, Any] | None:
    """An IAM or bucket policy input as a document, or None where it is unknown or not JSON."""
    if isinstance(value, dict):
        return value
    if not isinstance(value, str) or is_unknown(value):
        return None
    try:
        document = json.loads(value)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def statements(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A policy document's statements, one at a time."""
    for statement in as_list(document.get("Statement")):
        if isinstance(statement, dict):
            yield statement


def as_list(value: Any) -> list[Any]:
    """An IAM field that is either one value or a list of them, as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
