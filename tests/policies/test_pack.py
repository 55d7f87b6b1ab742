"""The CrossGuard adapter, driven with pulumi_policy's own argument types as the engine would:
props behind its unknown-checking proxy, unknowns as its sentinels."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    StackValidationArgs,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from fermion.policies import RULES, rule_named
from fermion.policies.pack import as_resource, stack_policies, stack_policy

from ..conftest import REPO


def engine_resource(type_: str, name: str, props: dict[str, Any]) -> PolicyResource:
    options = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    urn = f"urn:pulumi:dev::fermion::{type_}::{name}"
    return PolicyResource(
        type_, unknown_checking_proxy(props), urn, name, options, None, None, [], {}
    )


def violations(policy_name: str, resources: list[PolicyResource]) -> list[tuple[str, str | None]]:
    rule = rule_named(policy_name)
    assert rule is not None
    found: list[tuple[str, str | None]] = []
    stack_policy(rule).validate(
        StackValidationArgs(resources), lambda message, urn=None: found.append((message, urn))
    )
    return found


def test_the_pack_holds_every_rule_at_its_level() -> None:
    policies = {p.name: p for p in stack_policies()}
    assert set(policies) == {r.name for r in RULES}
    assert policies["s3-versioning"].enforcement_level == EnforcementLevel.MANDATORY
    assert policies["sg-open-ingress"].enforcement_level == EnforcementLevel.ADVISORY


def test_a_violation_is_reported_against_its_resource() -> None:
    repository = engine_resource(
        "aws:ecr/repository:Repository", "r", {"imageTagMutability": "MUTABLE"}
    )
    ((message, urn),) = violations("ecr-immutable-tags", [repository])
    assert urn == repository.urn and "IMMUTABLE" in message


def test_unknown_values_read_as_known_after_up_and_do_not_fail_a_rule() -> None:
    bucket = engine_resource("aws:s3/bucket:Bucket", "m", {"bucket": UNKNOWN_STRING_VALUE})
    policy = engine_resource(
        "aws:s3/bucketPolicy:BucketPolicy",
        "m",
        {"bucket": UNKNOWN_STRING_VALUE, "policy": UNKNOWN_STRING_VALUE},
    )
    assert as_resource(policy).inputs["policy"] == "(known after up)"
    assert violations("s3-tls-only", [bucket, policy]) == []
    plain = engine_resource(
        "aws:s3/bucketPolicy:BucketPolicy",
        "m",
        {"bucket": UNKNOWN_STRING_VALUE, "policy": json.dumps({"Statement": []})},
    )
    assert [urn for _, urn in violations("s3-tls-only", [bucket, plain])] == [bucket.urn]


def test_nested_props_reach_the_pod_rules() -> None:
    container = {"name": "c", "image": "python:latest", "securityContext": {"privileged": True}}
    deployment = engine_resource(
        "kubernetes:apps/v1:Deployment",
        "d",
        {"spec": {"template": {"spec": {"containers": [container]}}}},
    )
    assert len(violations("pod-not-privileged", [deployment])) == 1
    assert len(violations("image-pinned", [deployment])) == 1


def test_the_pack_program_builds_the_pack(monkeypatch: pytest.MonkeyPatch) -> None:
    # A real PolicyPack serves the engine and waits for it; this one only records.
    built: list[tuple[str, int]] = []
    monkeypatch.setattr(
        "fermion.policies.pack.PolicyPack",
        lambda name, policies: built.append((name, len(policies))),
    )
    runpy.run_path(str(REPO / "policies" / "__main__.py"), run_name="__main__")
    assert built == [("fermion", len(RULES))]
    assert (Path(REPO / "policies" / "PulumiPolicy.yaml")).is_file()


def _open_ingress() -> PolicyResource:
    rule = {"fromPort": 22, "toPort": 22, "protocol": "tcp", "cidrBlocks": ["0.0.0.0/0"]}
    return engine_resource(
        "aws:ec2/securityGroup:SecurityGroup", "open", {"ingress": [rule], "name": "open"}
    )


def test_an_advisory_policy_skips_what_its_config_waives() -> None:
    rule = rule_named("sg-open-ingress")
    assert rule is not None
    policy = stack_policy(rule)
    assert policy.config_schema is not None and "waivers" in policy.config_schema.properties
    resource = _open_ingress()

    def run(config: dict[str, Any]) -> list[str | None]:
        found: list[str | None] = []
        policy.validate(
            StackValidationArgs([resource], config), lambda message, urn=None: found.append(urn)
        )
        return found

    assert run({}) == [resource.urn]
    assert run({"waivers": [{"resource": "other", "reason": "r"}]}) == [resource.urn]
    assert run({"waivers": [{"resource": "open", "reason": "a bastion, by design"}]}) == []


def test_a_mandatory_policy_takes_no_waivers() -> None:
    rule = rule_named("ecr-immutable-tags")
    assert rule is not None
    assert stack_policy(rule).config_schema is None
    repository = engine_resource("aws:ecr/repository:Repository", "r", {})
    found: list[str | None] = []
    stack_policy(rule).validate(
        StackValidationArgs([repository], {"waivers": [{"resource": "r", "reason": "x"}]}),
        lambda message, urn=None: found.append(urn),
    )
    assert found == [repository.urn]
