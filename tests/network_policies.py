"""A small evaluator of Kubernetes NetworkPolicies, as the API defines them, for the tests: may
a pod open a TCP connection to another pod's port?

It covers what fermion writes and what the tests ask: pod and namespace selectors by
matchLabels, ipBlocks by CIDR (with `except`), and port numbers. A connection needs both ends'
consent: the source's egress (when a policy with Egress selects it) and the destination's
ingress (when a policy with Ingress selects it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: Mapping[str, str]
    ip: str = "10.50.0.10"
    namespace_labels: Mapping[str, str] = field(default_factory=dict)

    def namespace_matches(self, selector: Mapping[str, Any]) -> bool:
        labels = {"kubernetes.io/metadata.name": self.namespace, **self.namespace_labels}
        return _matches(selector, labels)


def _matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    if selector is None:
        return False
    wanted = selector.get("matchLabels") or {}
    if selector.get("matchExpressions"):
        raise NotImplementedError("matchExpressions")
    return all(labels.get(key) == value for key, value in wanted.items())


def _selects(policy: Mapping[str, Any], pod: Pod) -> bool:
    return policy["metadata"]["namespace"] == pod.namespace and _matches(
        policy["spec"]["podSelector"], pod.labels
    )


def _peer_matches(peer: Mapping[str, Any], pod: Pod, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        address = ipaddress.ip_address(pod.ip)
        block = peer["ipBlock"]
        inside = address in ipaddress.ip_network(block["cidr"])
        return inside and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
        )
    namespace_selector = peer.get("namespaceSelector")
    pod_selector = peer.get("podSelector")
    in_namespace = (
        pod.namespace_matches(namespace_selector)
        if namespace_selector is not None
        else pod.namespace == policy_namespace
    )
    return in_namespace and (pod_selector is None or _matches(pod_selector, pod.labels))


def _port_matches(ports: Sequence[Mapping[str, Any]] | None, port: int) -> bool:
    if not ports:
        return True
    return any(p.get("protocol", "TCP") == "TCP" and p.get("port") in (None, port) for p in ports)


def _allowed(
    policies: Sequence[Mapping[str, Any]], pod: Pod, peer: Pod, port: int, direction: str
) -> bool:
    """Whether `pod`'s policies of one direction ("Ingress" or "Egress") let `peer` through."""
    relevant = [
        p
        for p in policies
        if _selects(p, pod) and direction in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not relevant:
        return True  # no policy isolates the pod in this direction
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in relevant:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(
                _peer_matches(p, peer, policy["metadata"]["namespace"]) for p in peers
            )
            if peer_ok and _port_matches(rule.get("ports"), port):
                return True
    return False


def connection_allowed(
    policies: Sequence[Mapping[str, Any]], source: Pod, destination: Pod, port: int
) -> bool:
    """Whether `source` may connect to `destination` on TCP `port`."""
    return _allowed(policies, source, destination, port, "Egress") and _allowed(
        policies, destination, source, port, "Ingress"
    )
