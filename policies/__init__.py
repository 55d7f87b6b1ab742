"""fermion.policies: security rules over a stack's resources, shared by `fermion plan` and the
CrossGuard policy pack (`pulumi preview --policy-pack policies`)."""

from __future__ import annotations

from fermion.policies.findings import ADVISORY, MANDATORY, Finding, Level, Resource, Rule
from fermion.policies.rules import RULES, evaluate, rule_named
from fermion.policies.waivers import WaiverError, apply_waivers, check_waivers

__all__ = [
    "ADVISORY",
    "MANDATORY",
    "RULES",
    "Finding",
    "Level",
    "Resource",
    "Rule",
    "WaiverError",
    "apply_waivers",
    "check_waivers",
    "evaluate",
    "rule_named",
]
