"""`fermion outputs`: the stack's outputs, secrets masked unless asked for."""

from __future__ import annotations

from pulumi.automation import OutputValue

from fermion.stacks.operations import outputs_json
from fermion.stacks.plan import SECRET

OUTPUTS = {
    "tokens": OutputValue(value={"embed": ["tok-a", "tok-b"]}, secret=True),
    "namespaces": OutputValue(value={"default": "inference"}, secret=False),
}


def test_tokens_are_masked_unless_secrets_are_shown() -> None:
    assert outputs_json(OUTPUTS, show_secrets=False) == {
        "namespaces": {"default": "inference"},
        "tokens": SECRET,
    }
    assert outputs_json(OUTPUTS, show_secrets=True)["tokens"] == {"embed": ["tok-a", "tok-b"]}
