"""fermion.policies: security rules over a stack's resources, shared by `fermion plan` and the
CrossGuard policy pack (`pulumi preview --policy-pack policies`)."""

from __future__ import annotations

from fermion.policies.findings import ADVISORY, MANDATORY, Finding, Level, Resource, Rule
from fermion.policies.rules import RULES, evaluate, rule_named

__all__ = [
    "ADVISORY",
    "MANDATORY",
    "RULES",
    "Finding",
    "Level",
    "Resource",
    "Rule",
    "evaluate",
    "rule_named",
]
