"""The CrossGuard policy pack: each rule of `fermion.policies` as a Pulumi stack validation
policy, run by `pulumi preview --policy-pack policies` (and by `pulumi up`).

Stack validations see every resource at once, which the rules that join resources (a bucket
and its access block) need. Values the engine does not know yet become `(known after up)`,
as in `fermion plan`, and a rule that needs one to decide passes it: the pack runs again on
`pulumi up`, when they are known.

An advisory policy takes waivers as its config (`{"waivers": [{"resource", "reason"}]}`), which
`fermion preview|up ENV --policy-pack DIR` writes from the environment's `policy_waivers`; a
waived resource's finding is not reported. Mandatory policies take no config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyPack,
    PolicyResource,
    ReportViolation,
    Secret,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import (
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
)

from fermion.policies.findings import MANDATORY, Resource, Rule
from fermion.policies.rules import RULES
from fermion.policies.waivers import WAIVERS_KEY, resource_name

__all__ = ["NAME", "as_resource", "policy_pack", "stack_policies", "stack_policy"]

NAME = "fermion"
UNKNOWN = "(known after up)"
SECRET = "[secret]"
_SENTINELS = frozenset(
    {
        UNKNOWN_ARRAY_VALUE,
        UNKNOWN_ASSET_VALUE,
        UNKNOWN_BOOLEAN_VALUE,
        UNKNOWN_NUMBER_VALUE,
        UNKNOWN_OBJECT_VALUE,
        UNKNOWN_STRING_VALUE,
    }
)


def as_resource(resource: PolicyResource) -> Resource:
    """The rules' view of one resource the engine passes to a stack validation."""
    parent = resource.parent.urn if resource.parent is not None else None
    props = _plain(resource.props)
    return Resource(
        urn=resource.urn,
        type=resource.resource_type,
        name=resource.name,
        inputs=props if isinstance(props, dict) else {},
        parent=parent,
    )


def stack_policy(rule: Rule) -> StackValidationPolicy:
    """`rule` as a CrossGuard stack validation policy at the rule's own level."""

    mandatory = rule.level == MANDATORY

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        waived = set() if mandatory else _waived(args.get_config())
        resources = [as_resource(r) for r in args.resources]
        for resource in resources:
            for finding in rule.findings(resource, resources):
                if resource_name(finding.urn) not in waived:
                    report_violation(finding.message, finding.urn)

    level = EnforcementLevel.MANDATORY if mandatory else EnforcementLevel.ADVISORY
    return StackValidationPolicy(
        name=rule.name,
        description=rule.description,
        validate=validate,
        enforcement_level=level,
        config_schema=None if mandatory else _WAIVER_SCHEMA,
    )


_WAIVER_SCHEMA = PolicyConfigSchema(
    properties={
        WAIVERS_KEY: {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"resource": {"type": "string"}, "reason": {"type": "string"}},
                "required": ["resource", "reason"],
            },
            "default": [],
        }
    }
)


def _waived(config: Mapping[str, Any] | None) -> set[str]:
    """The resource names an advisory policy's config waives."""
    entries = (config or {}).get(WAIVERS_KEY) or []
    return {str(e["resource"]) for e in entries if isinstance(e, Mapping) and "resource" in e}


def stack_policies(rules: Sequence[Rule] = RULES) -> list[StackValidationPolicy]:
    """Every rule as a stack validation policy, each at its own level."""
    return [stack_policy(rule) for rule in rules]


def policy_pack(rules: Sequence[Rule] = RULES) -> PolicyPack:
    """The `fermion` policy pack. Building one serves it to the engine that started this
    program, and waits for the engine: only the pack's __main__.py calls it."""
    policies: list[Policy] = [*stack_policies(rules)]
    return PolicyPack(NAME, policies=policies)


def _plain(value: Any) -> Any:
    # The engine's props are proxies that raise on an unknown value; read their targets.
    target = _target(value)
    if isinstance(target, Mapping):
        return {str(k): _plain(v) for k, v in target.items()}
    if isinstance(target, (list, tuple)):
        return [_plain(v) for v in target]
    if isinstance(target, str) and target in _SENTINELS:
        return UNKNOWN
    if isinstance(target, Secret):
        return SECRET
    return target


def _target(value: Any) -> Any:
    if type(value).__name__.endswith("Proxy"):
        try:
            return value["__target"]
        except (KeyError, TypeError):
            return value
    return value
