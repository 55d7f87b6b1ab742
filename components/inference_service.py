"""InferenceService: a service's runtime image running on its shape, scaled by KEDA.

Requests reach the replicas through the KEDA HTTP add-on's interceptor, which routes by host
and path (`/v2/models/<name>/...`, the Open Inference Protocol's own prefix), counts requests for
the autoscaler, and holds them while a service scaled to zero starts a replica. A public
service's load balancer sends its traffic through the interceptor too. Requests need one of the
service's two bearer tokens. Each service reads its model with its own AWS role (EKS Pod
Identity), limited to its own prefix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from fermion.components.cluster import pod_identity
from fermion.components.cluster_addons import INTERCEPTOR_HOST, INTERCEPTOR_SERVICE, KEDA_NAMESPACE
from fermion.components.cluster_core import ClusterCore
from fermion.components.model_cache import MODEL_CACHE_URL_VARIABLE
from fermion.components.node_group import GPU_TAINT_KEY
from fermion.components.service_access import (
    DEFAULT_METRICS_NAMESPACES,
    TOKEN_FILE,
    TOKEN_FILE_VARIABLE,
    TOKEN_LENGTH,
    TOKENS_CHECKSUM_ANNOTATION,
    TOKENS_DIR,
    TOKENS_KEY,
    ingress_policy_spec,
    public_ingress_annotations,
    public_ingress_spec,
    token_file_text,
    tokens_checksum,
)
from fermion.components.tenant import restricted_container_security
from fermion.environments.errors import FermionError
from fermion.environments.shapes import Shape
from fermion.runtime_images.render import MODEL_URI_VARIABLE
from fermion.runtime_images.server.config import DEFAULT_GRACE_PERIOD_S

# Endpoints leave the load balancers' targets before a replica stops taking requests.
PRE_STOP_SECONDS = 5
# After its drain, the server needs a moment to exit before the kubelet kills it.
EXIT_MARGIN_SECONDS = 5


class ServiceArgsError(FermionError):
    """InferenceServiceArgs that no cluster could run."""

    def __init__(self, service: str, problem: str, fix: str) -> None:
        super().__init__(f"inference service {service!r}: {problem}. {fix}")


@dataclass(frozen=True)
class InferenceServiceArgs:
    """One model server deployment and how it scales.

    `cluster` is `Cluster.core` or `ExistingCluster.core`. `model_uri` is where the server
    loads the model from (it becomes ${FERMION_MODEL_URI}); `model_policy` is the IAM policy
    (JSON) its pods get to read it, typically `ModelStore.read_only_policy(name)`.
    With `auth` (the default) requests need a bearer token: two are made, both valid at once;
    raising one of `token_generations` replaces that token. A `public` service is served over
    HTTPS at `hostname`, with the ACM certificate `certificate_arn`, to `allowed_cidrs` (any
    address when empty), through an ALB in front of the interceptor; it needs the AWS Load
    Balancer Controller, and `auth`. `grace_period_s` must match the image's serving config,
    whose default (`DEFAULT_GRACE_PERIOD_S`) it shares: the pod gets that long, plus the
    pre-stop pause and a margin, to drain and exit. `cold_start_timeout_s` is how long the
    interceptor holds a request while a service at zero starts a replica. The `namespace` must
    exist (a `Tenant` makes one); `metrics_namespaces` are those whose pods may scrape /metrics.
    `model_cache_url`, when given, is the node's model cache (`ModelCache.url`), which the
    server asks for each model file before S3.
    """

    name: str
    image: pulumi.Input[str]
    shape: Shape
    cluster: ClusterCore
    model_uri: pulumi.Input[str]
    model_policy: pulumi.Input[str] | None = None
    namespace: str = "inference"
    port: int = 8080
    min_replicas: int = 1
    max_replicas: int = 2
    metric: Literal["in_flight", "rps"] = "in_flight"
    target: float = 8.0
    scale_down_delay_s: int = 300
    timeout_s: float = 30.0
    cold_start_timeout_s: int = 600
    grace_period_s: float = DEFAULT_GRACE_PERIOD_S
    env: Mapping[str, str] = field(default_factory=dict)
    auth: bool = True
    token_generations: tuple[int, int] = (1, 1)
    public: bool = False
    hostname: str | None = None
    certificate_arn: str | None = None
    allowed_cidrs: tuple[str, ...] = ()
    metrics_namespaces: tuple[str, ...] = DEFAULT_METRICS_NAMESPACES
    interceptor_service: str = INTERCEPTOR_SERVICE
    model_cache_url: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ServiceArgsError(
                self.name,
                f"replicas {self.min_replicas}..{self.max_replicas} are not a range",
                "Use 0 <= min_replicas <= max_replicas, with max_replicas at least 1",
            )
        if self.public and (self.hostname is None or self.certificate_arn is None):
            raise ServiceArgsError(
                self.name,
                "a public service is served over TLS only, for its own hostname",
                "Pass hostname and certificate_arn (an ACM certificate for it)",
            )
        if self.public and not self.auth:
            raise ServiceArgsError(
                self.name,
                "a public service must check bearer tokens",
                "Leave auth on, or make the service private",
            )
        for variable in (MODEL_URI_VARIABLE, TOKEN_FILE_VARIABLE, MODEL_CACHE_URL_VARIABLE):
            if variable in self.env:
                raise ServiceArgsError(
                    self.name,
                    f"env sets {variable}, which the component owns",
                    "Pass the model as model_uri and the node's cache as model_cache_url, and "
                    "leave tokens to auth",
                )


class InferenceService(pulumi.ComponentResource):
    """A Deployment of the model server with its Service, service account, AWS role,
    disruption budget, NetworkPolicy, token Secret and KEDA HTTPScaledObject (and an HTTPS
    Ingress when public).

    Outputs: `endpoint` (the in-cluster URL of the model's V2 API, through the interceptor),
    `public_endpoint` (its HTTPS URL, for public services; else None), `load_balancer` (the
    ALB's DNS name, where the hostname's DNS record points; else None) and `tokens` (secret:
    the two valid bearer tokens; empty without auth).
    """

    endpoint: str
    public_endpoint: str | None
    load_balancer: pulumi.Output[str] | None
    tokens: pulumi.Output[list[str]]

    def __init__(
        self, name: str, args: InferenceServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fermion:index:InferenceService", name, None, opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.cluster.provider)
        service = args.name
        labels = {
            "app.kubernetes.io/name": service,
            "app.kubernetes.io/component": "inference",
            "app.kubernetes.io/managed-by": "fermion",
        }
        selector = {"app.kubernetes.io/name": service}

        # Kubernetes objects are written as plain JSON-shaped dicts (as in a manifest), which
        # the SDK's typed overloads cannot see through; hence Any.
        def meta(object_name: str) -> Any:
            return {"name": object_name, "namespace": args.namespace, "labels": labels}

        account = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=meta(service), opts=k8s_opts)
        reads_model: list[pulumi.Resource] = []
        if args.model_policy is not None:
            reads_model = pod_identity(
                f"{name}-model",
                args.cluster.name,
                args.namespace,
                service,
                args.model_policy,
                args.tags,
                self,
            )

        before_pods: list[pulumi.Resource] = [account, *reads_model]
        self.tokens = pulumi.Output.secret([])
        checksum: pulumi.Input[str] | None = None
        if args.auth:
            self.tokens = pulumi.Output.all(
                *(
                    random.RandomPassword(
                        f"{name}-token-{slot}",
                        length=TOKEN_LENGTH,
                        special=False,
                        # A new generation replaces this slot's token, and only this one.
                        keepers={"generation": str(generation)},
                        opts=pulumi.ResourceOptions(parent=self),
                    ).result
                    for slot, generation in zip(
                        ("primary", "secondary"), args.token_generations, strict=True
                    )
                )
            ).apply(list)
            before_pods.append(
                k8s.core.v1.Secret(
                    f"{name}-tokens",
                    metadata=meta(f"{service}-tokens"),
                    type="Opaque",
                    string_data={TOKENS_KEY: self.tokens.apply(token_file_text)},
                    opts=k8s_opts,
                )
            )
            checksum = pulumi.Output.unsecret(self.tokens.apply(tokens_checksum))
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta(service),
            spec=_deployment_spec(args, labels, selector, checksum),
            # The server fetches its model at start: its role must be usable by then, and so
            # must its tokens.
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.cluster.provider, depends_on=before_pods
            ),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-ingress",
            metadata=meta(f"{service}-ingress"),
            spec=_manifest(ingress_policy_spec(selector, args.port, args.metrics_namespaces)),
            opts=k8s_opts,
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta(service),
            spec=_manifest(
                {
                    "selector": selector,
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                }
            ),
            opts=k8s_opts,
        )
        if args.max_replicas > 1:
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-pdb",
                metadata=meta(service),
                spec=_manifest({"maxUnavailable": 1, "selector": {"matchLabels": selector}}),
                opts=k8s_opts,
            )
        self.scaler = k8s.apiextensions.CustomResource(
            f"{name}-scaler",
            api_version="http.keda.sh/v1alpha1",
            kind="HTTPScaledObject",
            metadata=meta(service),
            spec=http_scaled_object_spec(args),
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.cluster.provider,
                depends_on=[self.deployment, self.service],
            ),
        )
        self.endpoint = f"http://{args.interceptor_service}{model_path(service)}"
        self.public_endpoint = None
        self.load_balancer = None
        if args.public and args.hostname is not None and args.certificate_arn is not None:
            # An Ingress's backend is a Service of its own namespace: the interceptor's.
            ingress = k8s.networking.v1.Ingress(
                f"{name}-public",
                metadata=_manifest(
                    {
                        "name": f"{service}-public",
                        "namespace": KEDA_NAMESPACE,
                        "labels": labels,
                        "annotations": public_ingress_annotations(
                            args.certificate_arn, args.allowed_cidrs, args.tags
                        ),
                    }
                ),
                spec=_manifest(public_ingress_spec(args.hostname, model_path(service))),
                opts=pulumi.ResourceOptions(
                    parent=self, provider=args.cluster.provider, depends_on=[self.scaler]
                ),
            )
            self.public_endpoint = f"https://{args.hostname}{model_path(service)}"
            self.load_balancer = ingress.status.apply(_hostname)
        self.register_outputs(
            {
                "endpoint": self.endpoint,
                "public_endpoint": self.public_endpoint,
                "load_balancer": self.load_balancer,
                "tokens": self.tokens,
            }
        )


def termination_grace_period_s(grace_period_s: float) -> int:
    """How long Kubernetes lets a replica's pod stop: the pre-stop pause, then the server's
    drain (`grace_period_s`), then a margin for it to exit."""
    return PRE_STOP_SECONDS + math.ceil(grace_period_s) + EXIT_MARGIN_SECONDS


def model_path(service: str) -> str:
    """The prefix of every V2 call for a model."""
    return f"/v2/models/{service}"


def http_scaled_object_spec(args: InferenceServiceArgs) -> dict[str, Any]:
    """The KEDA HTTP add-on's HTTPScaledObject spec for a service."""
    target = max(1, math.ceil(args.target))
    metric: dict[str, Any]
    if args.metric == "rps":
        metric = {"requestRate": {"targetValue": target, "window": "1m", "granularity": "1s"}}
    else:
        metric = {"concurrency": {"targetValue": target}}
    # In the cluster, callers address the interceptor's Service; from the internet, the ALB
    # passes the public hostname along. The interceptor matches hosts without their port.
    hosts = [INTERCEPTOR_HOST]
    if args.public and args.hostname is not None:
        hosts.append(args.hostname)
    return {
        "hosts": hosts,
        # Every V2 call for this model starts with its prefix.
        "pathPrefixes": [model_path(args.name)],
        "scaleTargetRef": {
            "name": args.name,
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "service": args.name,
            "port": 80,
        },
        "replicas": {"min": args.min_replicas, "max": args.max_replicas},
        "scaledownPeriod": args.scale_down_delay_s,
        "scalingMetric": metric,
        # A request to a service at zero waits for a replica (maybe a new GPU node, the image
        # pull and the model load), then for its own answer.
        "timeouts": {
            "conditionWait": f"{args.cold_start_timeout_s}s",
            "responseHeader": f"{math.ceil(args.timeout_s) + 5}s",
        },
    }


def _manifest(fields: dict[str, Any]) -> Any:
    return fields


def _deployment_spec(
    args: InferenceServiceArgs,
    labels: Mapping[str, str],
    selector: Mapping[str, str],
    tokens_checksum: pulumi.Input[str] | None,
) -> Any:
    shape = args.shape
    limits: dict[str, str] = {"memory": f"{shape.pod_memory_mib}Mi"}
    tolerations: list[dict[str, str]] = []
    if shape.gpu is not None:
        limits["nvidia.com/gpu"] = str(shape.gpu.count)
        tolerations.append({"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"})
    env = [{"name": MODEL_URI_VARIABLE, "value": args.model_uri}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    annotations: dict[str, Any] = {}
    if tokens_checksum is not None:
        env.append({"name": TOKEN_FILE_VARIABLE, "value": TOKEN_FILE})
        mounts.append({"name": "auth-tokens", "mountPath": TOKENS_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "auth-tokens",
                "secret": {"secretName": f"{args.name}-tokens", "defaultMode": 0o444},
            }
        )
        annotations[TOKENS_CHECKSUM_ANNOTATION] = tokens_checksum
    if args.model_cache_url is not None:
        env.append({"name": MODEL_CACHE_URL_VARIABLE, "value": args.model_cache_url})
    env += [{"name": key, "value": value} for key, value in sorted(args.env.items())]
    container = {
        "name": "server",
        "image": args.image,
        "ports": [{"name": "http", "containerPort": args.port}],
        "env": env,
        "resources": {
            "requests": {"cpu": f"{shape.pod_millicores}m", "memory": f"{shape.pod_memory_mib}Mi"},
            "limits": limits,
        },
        # Live as soon as the process is up; ready once the model is loaded and warm.
        "startupProbe": _probe("/v2/health/live", period=5, failures=60),
        "livenessProbe": _probe("/v2/health/live", period=10, failures=3),
        "readinessProbe": _probe("/v2/health/ready", period=5, failures=2),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        # The image's file system is read-only; the model cache and scratch files go to /tmp.
        "volumeMounts": mounts,
        "securityContext": restricted_container_security(),
    }
    return {
        "selector": {"matchLabels": dict(selector)},
        # New replicas become ready before old ones leave: capacity never dips in a rollout.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "template": {
            "metadata": {"labels": dict(labels), "annotations": annotations},
            "spec": {
                "serviceAccountName": args.name,
                # The server never calls the Kubernetes API; its AWS role comes by Pod Identity.
                "automountServiceAccountToken": False,
                "nodeSelector": {"fermion.dev/shape": shape.name},
                "tolerations": tolerations,
                "terminationGracePeriodSeconds": termination_grace_period_s(args.grace_period_s),
                "topologySpreadConstraints": [
                    {
                        "maxSkew": 1,
                        "topologyKey": "topology.kubernetes.io/zone",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": dict(selector)},
                    }
                ],
                "containers": [container],
                "volumes": volumes,
            },
        },
    }


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _hostname(status: Any) -> str:
    balancer = getattr(status, "load_balancer", None)
    ingress = getattr(balancer, "ingress", None) or [None]
    return str(getattr(ingress[0], "hostname", None) or getattr(ingress[0], "ip", None) or "")
