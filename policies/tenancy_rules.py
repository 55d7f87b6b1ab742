"""Rules for how tenants are kept apart and how services face the internet: each tenant
namespace is locked down, and a public Ingress terminates TLS in front of services that check
tokens."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

from fermion.environments.tenancy import RESERVED_NAMESPACES
from fermion.policies.findings import MANDATORY, Resource, Rule, is_unknown
from fermion.policies.links import as_list

__all__ = ["INGRESSES", "TENANCY_RULES", "public_ingress"]

NAMESPACES = ("kubernetes:core/v1:Namespace",)
INGRESSES = ("kubernetes:networking.k8s.io/v1:Ingress",)
NETWORK_POLICIES = ("kubernetes:networking.k8s.io/v1:NetworkPolicy",)
QUOTAS = ("kubernetes:core/v1:ResourceQuota",)
SCALERS = ("kubernetes:http.keda.sh/v1alpha1:HTTPScaledObject",)
DEPLOYMENTS = ("kubernetes:apps/v1:Deployment",)
_PSS = "pod-security.kubernetes.io"
_ALB = "alb.ingress.kubernetes.io"
# The server's ways of being given tokens; with either, requests need one.
_TOKEN_VARIABLES = ("FERMION_AUTH_TOKEN_FILE", "FERMION_AUTH_TOKENS")


def _in_namespace(
    stack: Sequence[Resource], types: Sequence[str], namespace: str
) -> list[Resource]:
    return [r for r in stack if r.type in types and r.get("metadata", "namespace") == namespace]


def _denies_all(policy: Resource) -> bool:
    """A NetworkPolicy that selects every pod and isolates both directions."""
    selector = policy.get("spec", "podSelector")
    types = set(as_list(policy.get("spec", "policyTypes")))
    return (
        isinstance(selector, dict)
        and not selector.get("matchLabels")
        and not selector.get("matchExpressions")
        and {"Ingress", "Egress"} <= types
    )


def tenant_namespace(namespace: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """A namespace for workloads enforces the restricted Pod Security Standard, denies all
    traffic it does not allow, and has a ResourceQuota."""
    name = namespace.get("metadata", "name")
    if not isinstance(name, str) or is_unknown(name) or name in RESERVED_NAMESPACES:
        return
    labels = namespace.get("metadata", "labels") or {}
    if labels.get(f"{_PSS}/enforce") != "restricted":
        yield (
            f"namespace {name} does not enforce the restricted Pod Security Standard: label it "
            f"{_PSS}/enforce=restricted (and audit, warn)"
        )
    if not any(_denies_all(p) for p in _in_namespace(stack, NETWORK_POLICIES, name)):
        yield (
            f"namespace {name} has no default-deny NetworkPolicy: add one with podSelector {{}} "
            "and policyTypes [Ingress, Egress], then allow what its pods need"
        )
    if not _in_namespace(stack, QUOTAS, name):
        yield f"namespace {name} has no ResourceQuota: cap what its pods may request"


def _hosts(ingress: Resource) -> list[str]:
    rules = as_list(ingress.get("spec", "rules"))
    return [r["host"] for r in rules if isinstance(r, dict) and isinstance(r.get("host"), str)]


def _checks_tokens(deployment: Resource) -> bool:
    containers = as_list(deployment.get("spec", "template", "spec", "containers"))
    return bool(containers) and all(
        any(
            isinstance(e, dict) and e.get("name") in _TOKEN_VARIABLES
            for e in as_list(c.get("env") if isinstance(c, dict) else None)
        )
        for c in containers
    )


def public_ingress(ingress: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """An internet-facing Ingress answers HTTPS only, with a certificate, and every service
    the interceptor routes its hosts to checks bearer tokens."""
    annotations = ingress.get("metadata", "annotations") or {}
    if annotations.get(f"{_ALB}/scheme") != "internet-facing":
        return
    name = ingress.get("metadata", "name")
    if not annotations.get(f"{_ALB}/certificate-arn"):
        yield (
            f"ingress {name} faces the internet without a TLS certificate ({_ALB}/certificate-arn)"
        )
    ports = annotations.get(f"{_ALB}/listen-ports")
    try:
        listeners = json.loads(ports) if isinstance(ports, str) else [{"HTTP": 80}]
    except ValueError:
        listeners = [{"HTTP": 80}]
    plain_http = any(isinstance(p, dict) and "HTTP" in p for p in as_list(listeners))
    if plain_http and annotations.get(f"{_ALB}/ssl-redirect") is None:
        yield (
            f"ingress {name} answers plain HTTP: listen on HTTPS only, or redirect HTTP "
            f"({_ALB}/ssl-redirect: '443')"
        )
    hosts = set(_hosts(ingress))
    for scaler in (r for r in stack if r.type in SCALERS):
        routed = set(as_list(scaler.get("spec", "hosts")))
        if not hosts & routed:
            continue
        target = scaler.get("spec", "scaleTargetRef", "name")
        namespace = scaler.get("metadata", "namespace")
        for deployment in _in_namespace(stack, DEPLOYMENTS, str(namespace)):
            if deployment.get("metadata", "name") == target and not _checks_tokens(deployment):
                yield (
                    f"ingress {name} exposes {namespace}/{target}, whose server checks no "
                    "bearer token: give it tokens (FERMION_AUTH_TOKEN_FILE)"
                )


TENANCY_RULES = (
    Rule(
        "tenant-namespace",
        MANDATORY,
        "Every tenant namespace enforces the restricted Pod Security Standard, has a "
        "default-deny NetworkPolicy and a ResourceQuota.",
        NAMESPACES,
        tenant_namespace,
    ),
)
