"""ModelCache: a cache of model files on each node, shared by the model servers on that node.

A DaemonSet runs the runtime image's `node_cache` server on every node that runs services (those
with a shape label), in a namespace of its own that enforces the restricted Pod Security
Standard like a tenant's. Its blobs live in an emptyDir with a size limit, on the node's disk:
the cache's pod lives as long as the node, so its emptyDir outlives the model servers that come,
go and restart beside it. No pod mounts a path of the node (`hostPath`), which the restricted
profile and the pack's `pod-no-host-path` rule forbid: a pod that could write the node's disk
could plant files another tenant then loads.

Its Service has `internalTrafficPolicy: Local`, so a model server only ever reaches the cache on
its own node. Its NetworkPolicies let in only the serving pods of the tenant namespaces, on the
cache's port, and let nothing out; each tenant's egress policy lets its serving pods reach it
(`Tenant`, `model_cache_egress_policy_spec`). Blobs are named by their SHA-256, and a model
server checks every one against the manifest it read from S3 with its own role
(runtime_images/server/storage.py), so the cache can never make it load the wrong file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from fermion.components.cluster_core import ClusterCore
from fermion.components.node_group import GPU_TAINT_KEY
from fermion.components.tenant import (
    NAMESPACE_NAME_LABEL,
    PSS_LABELS,
    restricted_container_security,
)
from fermion.environments.errors import FermionError
from fermion.environments.tenancy import MODEL_CACHE_NAMESPACE

MODEL_CACHE_NAME = "fermion-model-cache"
MODEL_CACHE_PORT = 8090
MODEL_CACHE_LABELS = {
    "app.kubernetes.io/name": MODEL_CACHE_NAME,
    "app.kubernetes.io/component": "model-cache",
    "app.kubernetes.io/managed-by": "fermion",
}
# The label InferenceService puts on every model server's pod.
SERVING_POD_LABELS = {"app.kubernetes.io/component": "inference"}
# The variable that tells a model server where its node's cache is (storage.py reads it).
MODEL_CACHE_URL_VARIABLE = "FERMION_MODEL_CACHE_URL"
# The cache keeps its blobs under this share of the emptyDir's size limit: the kubelet evicts a
# pod whose emptyDir passes its limit, and the uploads in progress count too.
BUDGET_SHARE = 0.9
BLOBS_DIR = "/var/cache/fermion"
_SHAPE_LABEL = "fermion.dev/shape"


class ModelCacheArgsError(FermionError):
    """ModelCacheArgs that no cluster could run."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"model cache: {problem}. {fix}")


@dataclass(frozen=True)
class ModelCacheArgs:
    """The cache on each node of `cluster` (`Cluster.core` or `ExistingCluster.core`).

    `image` is a runtime image (any of them holds the cache's server), `size_gib` the disk each
    node gives it, and `tenant_namespaces` the namespaces whose model servers may reach it.
    """

    image: pulumi.Input[str]
    cluster: ClusterCore
    tenant_namespaces: Sequence[str]
    size_gib: int = 100
    namespace: str = MODEL_CACHE_NAMESPACE
    port: int = MODEL_CACHE_PORT
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.size_gib < 1:
            raise ModelCacheArgsError(
                f"size_gib is {self.size_gib}", "Give each node's cache at least 1 GiB"
            )
        if not self.tenant_namespaces:
            raise ModelCacheArgsError(
                "no tenant namespace may reach it", "Pass the namespaces of the model servers"
            )

    @property
    def max_bytes(self) -> int:
        """The byte budget the cache's server keeps to."""
        return int(self.size_gib * (1 << 30) * BUDGET_SHARE)


def model_cache_url(namespace: str = MODEL_CACHE_NAMESPACE, port: int = MODEL_CACHE_PORT) -> str:
    """Where a model server reaches its node's cache: the Service, which keeps it on the node."""
    return f"http://{MODEL_CACHE_NAME}.{namespace}.svc.cluster.local:{port}"


class ModelCache(pulumi.ComponentResource):
    """A namespace with the cache's DaemonSet, its node-local Service and NetworkPolicies.

    Outputs: `url` (what model servers set FERMION_MODEL_CACHE_URL to) and `namespace`. The
    parts are attributes (`namespace_resource`, `daemon_set`, `service`, `policies`).
    """

    url: str
    namespace: str
    namespace_resource: k8s.core.v1.Namespace
    daemon_set: k8s.apps.v1.DaemonSet
    service: k8s.core.v1.Service
    policies: list[k8s.networking.v1.NetworkPolicy]

    def __init__(
        self, name: str, args: ModelCacheArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fermion:index:ModelCache", name, None, opts)
        self.namespace = args.namespace
        self.url = model_cache_url(args.namespace, args.port)
        labels = {**args.labels, **MODEL_CACHE_LABELS}
        self.namespace_resource = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": args.namespace, "labels": {**args.labels, **PSS_LABELS}},
            opts=pulumi.ResourceOptions(parent=self, provider=args.cluster.provider),
        )
        inside = pulumi.ResourceOptions(
            parent=self, provider=args.cluster.provider, depends_on=[self.namespace_resource]
        )

        def meta(object_name: str) -> Any:
            return {"name": object_name, "namespace": args.namespace, "labels": labels}

        deny_all: Any = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        admit: Any = cache_ingress_policy_spec(args.tenant_namespaces, args.port)
        self.policies = [
            k8s.networking.v1.NetworkPolicy(
                f"{name}-default-deny", metadata=meta("default-deny"), spec=deny_all, opts=inside
            ),
            k8s.networking.v1.NetworkPolicy(
                f"{name}-ingress",
                metadata=meta("allow-model-servers"),
                spec=admit,
                opts=inside,
            ),
        ]
        service_spec: Any = {
            "selector": dict(MODEL_CACHE_LABELS),
            # Only the cache on the caller's own node: a blob never crosses nodes.
            "internalTrafficPolicy": "Local",
            "ports": [{"name": "http", "port": args.port, "targetPort": "http"}],
        }
        self.service = k8s.core.v1.Service(
            f"{name}-service", metadata=meta(MODEL_CACHE_NAME), spec=service_spec, opts=inside
        )
        self.daemon_set = k8s.apps.v1.DaemonSet(
            f"{name}-daemonset",
            metadata=meta(MODEL_CACHE_NAME),
            spec=daemon_set_spec(args),
            opts=inside,
        )
        self.register_outputs({"url": self.url, "namespace": self.namespace})


def cache_ingress_policy_spec(tenant_namespaces: Sequence[str], port: int) -> dict[str, Any]:
    """What may reach the cache: the model servers of the tenant namespaces, on its port."""
    return {
        "podSelector": {"matchLabels": dict(MODEL_CACHE_LABELS)},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [
                    {
                        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}},
                        "podSelector": {"matchLabels": dict(SERVING_POD_LABELS)},
                    }
                    for namespace in sorted(set(tenant_namespaces))
                ],
                "ports": [{"protocol": "TCP", "port": port}],
            }
        ],
    }


def model_cache_egress_policy_spec(
    namespace: str = MODEL_CACHE_NAMESPACE, port: int = MODEL_CACHE_PORT
) -> dict[str, Any]:
    """What a tenant's model servers may reach besides the tenant's own egress: the cache."""
    return {
        "podSelector": {"matchLabels": dict(SERVING_POD_LABELS)},
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [
                    {
                        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}},
                        "podSelector": {"matchLabels": dict(MODEL_CACHE_LABELS)},
                    }
                ],
                "ports": [{"protocol": "TCP", "port": port}],
            }
        ],
    }


def cache_command(port: int, max_bytes: int) -> list[str]:
    """The cache container's arguments: the image's entrypoint (tini) runs them in place of the
    model server, with the blobs in the emptyDir mounted at BLOBS_DIR."""
    return [
        "python",
        "-m",
        "server.node_cache",
        "--port",
        str(port),
        "--dir",
        BLOBS_DIR,
        "--max-bytes",
        str(max_bytes),
    ]


def daemon_set_spec(args: ModelCacheArgs) -> Any:
    """The cache's DaemonSet: one pod on each node that runs services, its blobs in an emptyDir
    with a size limit, resources requested (disk included) so the scheduler reserves them."""
    size = f"{args.size_gib}Gi"
    probe = {
        "httpGet": {"path": "/healthz", "port": "http"},
        "periodSeconds": 10,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    container = {
        "name": "cache",
        "image": args.image,
        "args": cache_command(args.port, args.max_bytes),
        "ports": [{"name": "http", "containerPort": args.port}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": size},
            "limits": {"memory": "512Mi", "ephemeral-storage": size},
        },
        "readinessProbe": probe,
        "livenessProbe": probe,
        "volumeMounts": [{"name": "blobs", "mountPath": BLOBS_DIR}],
        "securityContext": restricted_container_security(),
    }
    return {
        "selector": {"matchLabels": dict(MODEL_CACHE_LABELS)},
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
        "template": {
            "metadata": {"labels": {**args.labels, **MODEL_CACHE_LABELS}},
            "spec": {
                "automountServiceAccountToken": False,
                # Nodes that run services carry their shape; system nodes do not.
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": _SHAPE_LABEL, "operator": "Exists"}]}
                            ]
                        }
                    }
                },
                # GPU nodes too: their model servers are the ones with the largest models.
                "tolerations": [
                    {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
                ],
                "containers": [container],
                "volumes": [{"name": "blobs", "emptyDir": {"sizeLimit": size}}],
            },
        },
    }
