"""Tenant: one team's namespace, with its quota, defaults and network isolation.

The namespace enforces the Pod Security Standards' `restricted` profile. A ResourceQuota caps
what all its pods request (GPUs, CPU, memory, pods), and a LimitRange gives every container
requests and limits, so the quota can count them. Its NetworkPolicies deny all traffic by
default and let out only what a model server needs: DNS, the EKS Pod Identity agent for its AWS
credentials, and HTTPS (S3 and STS, through the VPC endpoints or the NAT), and, when the
environment runs one, the node's model cache (`ModelCache`). What may come in is each service's
own policy (`InferenceService`): the interceptor, and metrics scrapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from fermion.components.cluster_core import ClusterCore
from fermion.environments.errors import FermionError

PSS_LEVEL = "restricted"
# Kubernetes' label for Pod Security admission, per mode.
PSS_LABELS = {
    f"pod-security.kubernetes.io/{mode}": PSS_LEVEL for mode in ("enforce", "audit", "warn")
}
TENANT_LABEL = "fermion.dev/tenant"


def restricted_container_security() -> dict[str, object]:
    """A container securityContext that the restricted profile admits, with a read-only root:
    what every fermion workload in a restricted namespace runs with."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


# Every namespace carries its own name under this label (Kubernetes sets it).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# The EKS Pod Identity agent answers each pod on the node at this link-local address.
POD_IDENTITY_AGENT = "169.254.170.23/32"
POD_IDENTITY_PORT = 80
DNS_SELECTOR = {"k8s-app": "kube-dns"}
# What a container gets when it names none: enough to start, never unbounded.
DEFAULT_REQUEST = {"cpu": "100m", "memory": "128Mi"}
DEFAULT_LIMIT = {"memory": "512Mi"}


class TenantArgsError(FermionError):
    """TenantArgs that no cluster could run."""

    def __init__(self, tenant: str, problem: str, fix: str) -> None:
        super().__init__(f"tenant {tenant!r}: {problem}. {fix}")


@dataclass(frozen=True)
class TenantQuota:
    """What all of a tenant's pods may request together."""

    gpus: int
    cpu_millicores: int
    memory_mib: int
    pods: int

    def hard(self) -> dict[str, str]:
        """The ResourceQuota's `hard` limits."""
        return {
            "requests.cpu": f"{self.cpu_millicores}m",
            "requests.memory": f"{self.memory_mib}Mi",
            "limits.memory": f"{self.memory_mib}Mi",
            "requests.nvidia.com/gpu": str(self.gpus),
            "pods": str(self.pods),
        }


@dataclass(frozen=True)
class TenantArgs:
    """A tenant's namespace and quota on one cluster (`Cluster.core` or
    `ExistingCluster.core`). `labels` go on the namespace beside the tenant and PSS labels.
    `namespace_aliases` name the Namespace resource as a stack declared it before, so that
    adopting tenants does not replace (and empty) a namespace that already exists.
    `model_cache_egress`, when given, is one more egress NetworkPolicy spec: the way to the
    node's model cache (`model_cache.model_cache_egress_policy_spec`)."""

    name: str
    namespace: str
    quota: TenantQuota
    cluster: ClusterCore
    labels: Mapping[str, str] = field(default_factory=dict)
    namespace_aliases: tuple[pulumi.Alias, ...] = ()
    model_cache_egress: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        q = self.quota
        if min(q.gpus, q.cpu_millicores, q.memory_mib, q.pods) < 0 or q.pods < 1:
            raise TenantArgsError(
                self.name,
                f"quota {q} has a negative part or no pods",
                "Give every part of the quota a value of 0 or more, and pods at least 1",
            )


class Tenant(pulumi.ComponentResource):
    """A namespace for one tenant, with its ResourceQuota, LimitRange and NetworkPolicies.

    Outputs: `namespace` (its name; services of the tenant are created in it). The parts are
    attributes (`namespace_resource`, `quota`, `limits`, `policies`).
    """

    namespace: str
    namespace_resource: k8s.core.v1.Namespace
    quota: k8s.core.v1.ResourceQuota
    limits: k8s.core.v1.LimitRange
    policies: list[k8s.networking.v1.NetworkPolicy]

    def __init__(
        self, name: str, args: TenantArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fermion:index:Tenant", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.cluster.provider)
        self.namespace = args.namespace
        labels = {**args.labels, TENANT_LABEL: args.name}
        self.namespace_resource = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": args.namespace, "labels": {**labels, **PSS_LABELS}},
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(aliases=list(args.namespace_aliases))
            ),
        )
        inside = pulumi.ResourceOptions(
            parent=self, provider=args.cluster.provider, depends_on=[self.namespace_resource]
        )

        def meta(object_name: str) -> Any:
            return {"name": object_name, "namespace": args.namespace, "labels": labels}

        self.quota = k8s.core.v1.ResourceQuota(
            f"{name}-quota",
            metadata=meta("tenant-quota"),
            spec={"hard": args.quota.hard()},
            opts=inside,
        )
        # Plain manifest dicts, which the SDK's typed overloads cannot see through; hence Any.
        defaults: Any = {
            "limits": [
                {
                    "type": "Container",
                    "defaultRequest": dict(DEFAULT_REQUEST),
                    "default": dict(DEFAULT_LIMIT),
                }
            ]
        }
        deny_all: Any = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        egress: Any = egress_policy_spec()
        self.limits = k8s.core.v1.LimitRange(
            f"{name}-limits", metadata=meta("container-defaults"), spec=defaults, opts=inside
        )
        self.policies = [
            k8s.networking.v1.NetworkPolicy(
                f"{name}-default-deny",
                metadata=meta("default-deny"),
                spec=deny_all,
                opts=inside,
            ),
            k8s.networking.v1.NetworkPolicy(
                f"{name}-egress",
                metadata=meta("allow-model-server-egress"),
                spec=egress,
                opts=inside,
            ),
        ]
        if args.model_cache_egress is not None:
            to_cache: Any = dict(args.model_cache_egress)
            self.policies.append(
                k8s.networking.v1.NetworkPolicy(
                    f"{name}-model-cache-egress",
                    metadata=meta("allow-model-cache-egress"),
                    spec=to_cache,
                    opts=inside,
                )
            )
        self.register_outputs({"namespace": self.namespace})


def egress_policy_spec() -> dict[str, Any]:
    """What every pod of a tenant may reach: DNS, its credentials, and HTTPS.

    A NetworkPolicy cannot name S3 or STS: their addresses are AWS's prefix lists and the VPC
    endpoints' interfaces. HTTPS is therefore open to any address; a pod of another tenant
    still refuses it, because its own policy admits only the interceptor and metrics scrapes.
    """
    dns_ports = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    return {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [
                    {
                        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "kube-system"}},
                        "podSelector": {"matchLabels": dict(DNS_SELECTOR)},
                    }
                ],
                "ports": dns_ports,
            },
            {
                "to": [{"ipBlock": {"cidr": POD_IDENTITY_AGENT}}],
                "ports": [{"protocol": "TCP", "port": POD_IDENTITY_PORT}],
            },
            {
                "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                "ports": [{"protocol": "TCP", "port": 443}],
            },
        ],
    }
