"""Waivers: an environment accepts an advisory finding on one named resource, with a reason.
A mandatory policy cannot be waived from the environment file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from fermion.environments.errors import FermionError
from fermion.environments.sections import PolicyWaiverSpec
from fermion.policies.findings import MANDATORY, Finding
from fermion.policies.rules import RULES, rule_named

__all__ = [
    "WAIVERS_KEY",
    "WaiverError",
    "apply_waivers",
    "check_waivers",
    "pack_config",
    "resource_name",
]

# The key of an advisory policy's config in the CrossGuard pack that lists its waivers.
WAIVERS_KEY = "waivers"


class WaiverError(FermionError):
    """An environment waives a policy it may not: a mandatory one, or one that does not exist."""

    def __init__(self, policy: str, resource: str, problem: str) -> None:
        self.policy = policy
        super().__init__(f"policy_waivers: cannot waive {policy!r} for {resource!r}: {problem}")


def check_waivers(waivers: Sequence[PolicyWaiverSpec]) -> None:
    """Refuse a waiver of a mandatory policy or of a policy that does not exist."""
    advisory = sorted(r.name for r in RULES if r.level != MANDATORY)
    for waiver in waivers:
        rule = rule_named(waiver.policy)
        if rule is None:
            raise WaiverError(
                waiver.policy,
                waiver.resource,
                f"no such policy; advisory ones: {', '.join(advisory)}",
            )
        if rule.level == MANDATORY:
            raise WaiverError(
                waiver.policy,
                waiver.resource,
                "it is mandatory; fix the resource, or run a stack of your own without it",
            )


def resource_name(urn: str) -> str:
    """The resource's name, the last part of its URN."""
    return urn.rpartition("::")[2]


def apply_waivers(
    findings: Sequence[Finding], waivers: Sequence[PolicyWaiverSpec]
) -> list[Finding]:
    """`findings`, each advisory one that a waiver names marked waived with its reason."""
    check_waivers(waivers)
    reasons = {(w.policy, w.resource): w.reason for w in waivers}
    return [
        replace(f, waived=reasons[(f.policy, resource_name(f.urn))])
        if f.level != MANDATORY and (f.policy, resource_name(f.urn)) in reasons
        else f
        for f in findings
    ]


def pack_config(waivers: Sequence[PolicyWaiverSpec]) -> dict[str, Any]:
    """The CrossGuard pack's config (`--policy-pack-config`) that carries the same waivers:
    each waived policy's `waivers`, with the resource and the reason."""
    check_waivers(waivers)
    config: dict[str, Any] = {}
    for waiver in waivers:
        entry = {"resource": waiver.resource, "reason": waiver.reason}
        config.setdefault(waiver.policy, {WAIVERS_KEY: []})[WAIVERS_KEY].append(entry)
    return config
