"""Who may reach a service, and how: its bearer tokens, its NetworkPolicy, and its public
Ingress. `InferenceService` declares them; they are plain manifests, so the rules and the tests
read them too.

All traffic, public or not, passes the KEDA HTTP add-on's interceptor, which counts it for the
autoscaler and holds it while a service scales up from zero. A public service's Application
Load Balancer (AWS Load Balancer Controller) terminates TLS and sends its hostname's requests to
the interceptor; the interceptor routes them by host and path to the service's pods.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from fermion.components.cluster_addons import (
    INTERCEPTOR_POD_LABELS,
    INTERCEPTOR_PORT,
    INTERCEPTOR_PROXY_SERVICE,
    KEDA_NAMESPACE,
)
from fermion.components.tenant import NAMESPACE_NAME_LABEL

# The token Secret's key and where pods find it; the server reads one token per line.
TOKENS_KEY = "tokens"
TOKENS_DIR = "/var/run/fermion/auth"
TOKEN_FILE = f"{TOKENS_DIR}/{TOKENS_KEY}"
TOKEN_FILE_VARIABLE = "FERMION_AUTH_TOKEN_FILE"
# A pod template annotation that changes with the tokens, so a rotation rolls the replicas
# (one new replica ready before an old one goes) and each reads the new file at start.
TOKENS_CHECKSUM_ANNOTATION = "fermion.dev/auth-tokens-sha256"
TOKEN_LENGTH = 48
# Namespaces whose pods may scrape a service's /metrics.
DEFAULT_METRICS_NAMESPACES = ("monitoring",)

_ALB = "alb.ingress.kubernetes.io"
# TLS 1.2 and 1.3 only, forward secrecy only (the controller's recommended policy).
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# The interceptor answers its health on its admin port (the chart's default, 9090).
_INTERCEPTOR_ADMIN_PORT = "9090"


def token_file_text(tokens: Sequence[str]) -> str:
    """The token file's contents: one token per line."""
    return "".join(f"{token}\n" for token in tokens)


def tokens_checksum(tokens: Sequence[str]) -> str:
    """A digest of the tokens that says when they changed and reveals nothing of them."""
    return hashlib.sha256(token_file_text(tokens).encode()).hexdigest()


def ingress_policy_spec(
    selector: Mapping[str, str], port: int, metrics_namespaces: Sequence[str]
) -> dict[str, Any]:
    """What may reach a service's pods: the interceptor, and metrics scrapes, on its port."""
    sources: list[dict[str, Any]] = [
        {
            "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: KEDA_NAMESPACE}},
            "podSelector": {"matchLabels": dict(INTERCEPTOR_POD_LABELS)},
        }
    ]
    sources += [
        {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}
        for namespace in metrics_namespaces
    ]
    return {
        "podSelector": {"matchLabels": dict(selector)},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": sources, "ports": [{"protocol": "TCP", "port": port}]}],
    }


def public_ingress_annotations(
    certificate_arn: str, allowed_cidrs: Sequence[str], tags: Mapping[str, str]
) -> dict[str, str]:
    """An internet-facing ALB: HTTPS only (HTTP answers with a redirect), from `allowed_cidrs`
    (any address when empty), to the interceptor's pods."""
    annotations = {
        f"{_ALB}/scheme": "internet-facing",
        f"{_ALB}/target-type": "ip",
        f"{_ALB}/listen-ports": json.dumps([{"HTTP": 80}, {"HTTPS": 443}]),
        f"{_ALB}/ssl-redirect": "443",
        f"{_ALB}/certificate-arn": certificate_arn,
        f"{_ALB}/ssl-policy": SSL_POLICY,
        f"{_ALB}/inbound-cidrs": ",".join(allowed_cidrs) if allowed_cidrs else "0.0.0.0/0",
        f"{_ALB}/healthcheck-port": _INTERCEPTOR_ADMIN_PORT,
        f"{_ALB}/healthcheck-path": "/readyz",
    }
    if tags:
        annotations[f"{_ALB}/tags"] = ",".join(f"{k}={v}" for k, v in sorted(tags.items()))
    return annotations


def public_ingress_spec(hostname: str, path: str) -> dict[str, Any]:
    """The Ingress rule: `hostname`'s requests under `path`, to the interceptor."""
    backend = {"service": {"name": INTERCEPTOR_PROXY_SERVICE, "port": {"number": INTERCEPTOR_PORT}}}
    return {
        "ingressClassName": "alb",
        "tls": [{"hosts": [hostname]}],
        "rules": [
            {
                "host": hostname,
                "http": {"paths": [{"path": path, "pathType": "Prefix", "backend": backend}]},
            }
        ],
    }
