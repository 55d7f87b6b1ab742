"""Every rule of the pack, and the one function that runs them over a stack's resources."""

from __future__ import annotations

from collections.abc import Sequence

from fermion.policies.cluster_rules import CLUSTER_RULES
from fermion.policies.findings import Finding, Resource, Rule
from fermion.policies.storage_rules import STORAGE_RULES
from fermion.policies.tenancy_rules import TENANCY_RULES
from fermion.policies.workload_rules import WORKLOAD_RULES

__all__ = ["RULES", "evaluate", "rule_named"]

RULES: tuple[Rule, ...] = (*STORAGE_RULES, *CLUSTER_RULES, *WORKLOAD_RULES, *TENANCY_RULES)


def rule_named(name: str) -> Rule | None:
    """The rule called `name`, or None."""
    return next((r for r in RULES if r.name == name), None)


def evaluate(resources: Sequence[Resource], rules: Sequence[Rule] = RULES) -> list[Finding]:
    """Every finding of `rules` on `resources`, resource by resource in their order."""
    return [
        f for resource in resources for rule in rules for f in rule.findings(resource, resources)
    ]
