"""The tenant-namespace rule and the public Ingress half of service-not-public, on minimal
resources."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fermion.policies import Resource
from fermion.policies.rules import evaluate

from .test_rules import names, res

ALB = "alb.ingress.kubernetes.io"
PSS = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "audit", "warn")}
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def tenant_stack(**drop: bool) -> list[Resource]:
    labels = {} if drop.get("pss") else PSS
    stack = [res("kubernetes:core/v1:Namespace", "ns", metadata={"name": "team", "labels": labels})]
    if not drop.get("deny"):
        stack.append(
            res(
                NETPOL,
                "deny",
                metadata={"name": "default-deny", "namespace": "team"},
                spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
            )
        )
    if not drop.get("quota"):
        stack.append(
            res(
                "kubernetes:core/v1:ResourceQuota",
                "quota",
                metadata={"name": "q", "namespace": "team"},
                spec={"hard": {"pods": "10"}},
            )
        )
    return stack


def test_a_locked_down_tenant_namespace_passes() -> None:
    assert evaluate(tenant_stack()) == []


@pytest.mark.parametrize(
    ("missing", "fragment"),
    [
        ("pss", "restricted Pod Security Standard"),
        ("deny", "no default-deny NetworkPolicy"),
        ("quota", "no ResourceQuota"),
    ],
)
def test_a_tenant_namespace_missing_a_part_is_named(missing: str, fragment: str) -> None:
    findings = evaluate(tenant_stack(**{missing: True}))
    assert names(findings) == ["tenant-namespace"]
    assert fragment in findings[0].message


def test_a_policy_that_selects_some_pods_is_no_default_deny() -> None:
    stack = tenant_stack(deny=True)
    stack.append(
        res(
            NETPOL,
            "some",
            metadata={"name": "some", "namespace": "team"},
            spec={"podSelector": {"matchLabels": {"a": "b"}}, "policyTypes": ["Ingress", "Egress"]},
        )
    )
    assert names(evaluate(stack)) == ["tenant-namespace"]


def test_system_namespaces_are_not_tenants() -> None:
    stack = [res("kubernetes:core/v1:Namespace", "keda", metadata={"name": "keda"})]
    assert evaluate(stack) == []


def ingress(**annotations: str) -> Resource:
    base = {
        f"{ALB}/scheme": "internet-facing",
        f"{ALB}/certificate-arn": "arn:aws:acm:us-east-1:123456789012:certificate/x",
        f"{ALB}/listen-ports": json.dumps([{"HTTP": 80}, {"HTTPS": 443}]),
        f"{ALB}/ssl-redirect": "443",
    }
    merged = {k: v for k, v in {**base, **annotations}.items() if v != ""}
    return res(
        "kubernetes:networking.k8s.io/v1:Ingress",
        "public",
        metadata={"name": "embed-public", "namespace": "keda", "annotations": merged},
        spec={"rules": [{"host": "embed.example.com"}]},
    )


def routed(env: list[dict[str, Any]]) -> list[Resource]:
    return [
        res(
            "kubernetes:http.keda.sh/v1alpha1:HTTPScaledObject",
            "scaler",
            metadata={"name": "embed", "namespace": "team"},
            spec={"hosts": ["embed.example.com"], "scaleTargetRef": {"name": "embed"}},
        ),
        res(
            "kubernetes:apps/v1:Deployment",
            "deployment",
            metadata={"name": "embed", "namespace": "team"},
            spec={"template": {"spec": {"containers": [{"name": "server", "env": env}]}}},
        ),
    ]


TOKENS = [{"name": "FERMION_AUTH_TOKEN_FILE", "value": "/var/run/fermion/auth/tokens"}]


def test_an_https_ingress_to_services_with_tokens_passes() -> None:
    stack = [ingress(), *routed(TOKENS)]
    assert [f for f in evaluate(stack) if f.policy == "service-not-public"] == []


@pytest.mark.parametrize(
    ("annotations", "env", "fragment"),
    [
        ({f"{ALB}/certificate-arn": ""}, TOKENS, "without a TLS certificate"),
        ({f"{ALB}/ssl-redirect": ""}, TOKENS, "answers plain HTTP"),
        ({}, [], "checks no bearer token"),
    ],
)
def test_a_public_ingress_without_tls_or_tokens_is_named(
    annotations: dict[str, str], env: list[dict[str, Any]], fragment: str
) -> None:
    stack = [ingress(**annotations), *routed(env)]
    findings = [f for f in evaluate(stack) if f.policy == "service-not-public"]
    assert len(findings) == 1 and fragment in findings[0].message
    assert findings[0].level == "mandatory"


def test_an_internal_ingress_is_not_public() -> None:
    stack = [ingress(**{f"{ALB}/scheme": "internal", f"{ALB}/certificate-arn": ""}), *routed([])]
    assert [f for f in evaluate(stack) if f.policy == "service-not-public"] == []
