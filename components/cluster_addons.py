"""ClusterAddons: the in-cluster software every fermion cluster runs, as pinned Helm releases.

GPU support (the NVIDIA device plugin and the DCGM exporter), metrics-server, KEDA with its HTTP
add-on (scale to and from zero), cluster-autoscaler and, optionally, the AWS Load Balancer
Controller. The autoscaler and the controller get AWS roles through EKS Pod Identity.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from fermion.components.cluster import pod_identity
from fermion.components.cluster_core import ClusterCore
from fermion.components.node_group import AMI_LABEL, GPU_TAINT_KEY
from fermion.components.system_node_group import SYSTEM_TAINT
from fermion.environments.errors import FermionError


@dataclass(frozen=True)
class HelmChart:
    """One pinned chart: its repository, its version, and its name where that is not the key."""

    repo: str
    version: str
    chart: str | None = None


_NVIDIA = "https://nvidia.github.io"
_KEDA = "https://kedacore.github.io/charts"
# Keyed by the short names `ClusterAddons.releases` uses; each is also the Helm release name.
CHARTS: dict[str, HelmChart] = {
    "nvidia-device-plugin": HelmChart(f"{_NVIDIA}/k8s-device-plugin", "0.17.1"),
    "dcgm-exporter": HelmChart(f"{_NVIDIA}/dcgm-exporter/helm-charts", "4.1.3"),
    "metrics-server": HelmChart("https://kubernetes-sigs.github.io/metrics-server/", "3.12.2"),
    # The KEDA CRD schemas fermion validates against come from just after v2.20.1.
    "keda": HelmChart(_KEDA, "2.20.1"),
    "keda-http-add-on": HelmChart(_KEDA, "0.14.1", chart="keda-add-ons-http"),
    # The chart is pinned once; the image follows the cluster's minor version (below).
    "cluster-autoscaler": HelmChart("https://kubernetes.github.io/autoscaler", "9.59.0"),
    "aws-load-balancer-controller": HelmChart("https://aws.github.io/eks-charts", "3.4.2"),
}

# cluster-autoscaler is only supported against the Kubernetes minor it was built for.
AUTOSCALER_IMAGE_TAGS = {
    "1.30": "v1.30.4",
    "1.31": "v1.31.2",
    "1.32": "v1.32.5",
    "1.33": "v1.33.5",
    "1.34": "v1.34.4",
    "1.35": "v1.35.1",
}

KEDA_NAMESPACE = "keda"
NVIDIA_NAMESPACE = "nvidia"
SYSTEM_NAMESPACE = "kube-system"
# Node groups put this label (from shape_labels) on GPU nodes only.
GPU_NODE_LABEL = "fermion.dev/gpu-model"
AUTOSCALER_SERVICE_ACCOUNT = "cluster-autoscaler"
LBC_SERVICE_ACCOUNT = "aws-load-balancer-controller"
_INTERCEPTOR_PROXY = "interceptor-proxy"
INTERCEPTOR_PORT = 8080
# The HTTP add-on's chart names the proxy's Service `keda-add-ons-http-<interceptor.proxy.service>`.
INTERCEPTOR_PROXY_SERVICE = f"keda-add-ons-http-{_INTERCEPTOR_PROXY}"
INTERCEPTOR_HOST = f"{INTERCEPTOR_PROXY_SERVICE}.{KEDA_NAMESPACE}.svc.cluster.local"
INTERCEPTOR_SERVICE = f"{INTERCEPTOR_HOST}:{INTERCEPTOR_PORT}"
_HTTP_ADD_ON_RELEASE = "keda-http-add-on"
# The labels the chart (0.14.1, templates/interceptor/deployment.yaml) puts on interceptor pods.
INTERCEPTOR_POD_LABELS = {
    "app.kubernetes.io/component": "interceptor",
    "app.kubernetes.io/name": "http-add-on",
    "app.kubernetes.io/instance": _HTTP_ADD_ON_RELEASE,
}
# The controller's docs/install/iam_policy.json at the pinned release (v3.4.2), unchanged.
_LBC_POLICY = Path(__file__).with_name("aws_load_balancer_controller_iam_policy.json")

_GPU_TOLERATION = {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
# Lets a pod onto the system nodes; without it the add-ons could not run there.
SYSTEM_TOLERATION = {"key": SYSTEM_TAINT.key, "operator": "Exists"}
_ON_GPU = {"key": GPU_NODE_LABEL, "operator": "Exists"}
# Bottlerocket's NVIDIA variant runs its own device plugin; a second one would fight it.
_NOT_BOTTLEROCKET = {"key": AMI_LABEL, "operator": "NotIn", "values": ["bottlerocket"]}


def _affinity(*expressions: dict[str, Any]) -> dict[str, Any]:
    terms = [{"matchExpressions": list(expressions)}]
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
        }
    }


class UnsupportedKubernetesVersionError(FermionError):
    """A Kubernetes version with no cluster-autoscaler image pinned for it."""

    def __init__(self, version: str) -> None:
        self.version = version
        super().__init__(
            f"Kubernetes {version!r} has no pinned cluster-autoscaler image (pinned: "
            f"{', '.join(AUTOSCALER_IMAGE_TAGS)}). Use one of those versions for the cluster, "
            "or add the matching cluster-autoscaler release (v<minor>.<patch>) to "
            "AUTOSCALER_IMAGE_TAGS in fermion/components/cluster_addons.py"
        )


class MissingVpcIdError(FermionError):
    """The load balancer controller was asked for without the cluster's VPC id."""

    def __init__(self) -> None:
        super().__init__(
            "the AWS Load Balancer Controller needs the cluster's VPC id: nodes allow one IMDS "
            "hop, so the controller cannot discover it itself. Set ClusterAddonsArgs.vpc_id "
            "(Network exports it), or leave load_balancer_controller off"
        )


def autoscaler_image_tag(kubernetes_version: str) -> str:
    """The cluster-autoscaler image for a Kubernetes version ("1.34" or "1.34.2")."""
    minor = ".".join(kubernetes_version.removeprefix("v").split(".")[:2])
    if minor not in AUTOSCALER_IMAGE_TAGS:
        raise UnsupportedKubernetesVersionError(kubernetes_version)
    return AUTOSCALER_IMAGE_TAGS[minor]


# cluster-autoscaler's documented permissions (its cloudprovider/aws README).
_AUTOSCALER_READS = (
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "autoscaling:DescribeTags",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
    "eks:DescribeNodegroup",
)
_AUTOSCALER_WRITES = (
    "autoscaling:SetDesiredCapacity",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
)


def autoscaler_policy(cluster_name: str) -> str:
    """cluster-autoscaler's permissions; it may resize only this cluster's groups."""
    owned = {"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}}
    statements = [
        {"Effect": "Allow", "Action": list(_AUTOSCALER_READS), "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": list(_AUTOSCALER_WRITES),
            "Resource": "*",
            "Condition": owned,
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def load_balancer_controller_policy() -> str:
    """The controller's published IAM policy, compacted to fit an inline role policy."""
    return json.dumps(json.loads(_LBC_POLICY.read_text(encoding="utf-8")), separators=(",", ":"))


@dataclass(frozen=True)
class ClusterAddonsArgs:
    """What the add-ons need to know about their cluster.

    `cluster` is `Cluster.core` or `ExistingCluster.core`; `kubernetes_version` picks the
    cluster-autoscaler image. `vpc_id` is needed only by the load balancer controller. With
    `gpu` off, no NVIDIA software is installed.
    """

    cluster: ClusterCore
    kubernetes_version: str = "1.34"
    vpc_id: pulumi.Input[str] | None = None
    gpu: bool = True
    load_balancer_controller: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)


class ClusterAddons(pulumi.ComponentResource):
    """Pinned Helm releases for GPUs, metrics, scale-to-zero, node autoscaling and load balancers.

    Outputs: `releases` (by short name), `keda_namespace`, and `interceptor_service`, the
    in-cluster address of the KEDA HTTP add-on's interceptor, which fronts scaled-to-zero services.
    """

    releases: dict[str, k8s.helm.v3.Release]
    keda_namespace: str
    interceptor_service: str

    def __init__(
        self, name: str, args: ClusterAddonsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        # Refuse bad input before anything is registered.
        image_tag = autoscaler_image_tag(args.kubernetes_version)
        if args.load_balancer_controller and args.vpc_id is None:
            raise MissingVpcIdError()
        super().__init__("fermion:index:ClusterAddons", name, None, opts)
        self._name = name
        self._cluster_name = args.cluster.name
        self._provider = args.cluster.provider
        self._tags = dict(args.tags)
        self.releases = {}
        self.keda_namespace = KEDA_NAMESPACE
        self.interceptor_service = INTERCEPTOR_SERVICE
        proxy = {"service": _INTERCEPTOR_PROXY, "port": INTERCEPTOR_PORT}

        if args.gpu:
            nvidia = [self._namespace(NVIDIA_NAMESPACE)]
            self._release(
                "nvidia-device-plugin",
                NVIDIA_NAMESPACE,
                {
                    "affinity": _affinity(_ON_GPU, _NOT_BOTTLEROCKET),
                    "tolerations": [SYSTEM_TOLERATION, _GPU_TOLERATION],
                    # Feature discovery would run NFD on every node; shape labels say enough.
                    "gfd": {"enabled": False},
                    "nfd": {"enabled": False},
                },
                nvidia,
            )
            self._release(
                "dcgm-exporter",
                NVIDIA_NAMESPACE,
                {
                    "affinity": _affinity(_ON_GPU),
                    "tolerations": [_GPU_TOLERATION],
                    # No Prometheus Operator here: its ServiceMonitor CRD would be missing.
                    "serviceMonitor": {"enabled": False},
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "128Mi"},
                        "limits": {"memory": "512Mi"},
                    },
                },
                nvidia,
            )
        # HPA and KEDA's CPU and memory triggers read resource metrics from here.
        self._release(
            "metrics-server",
            SYSTEM_NAMESPACE,
            {
                "replicas": 2,
                "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
                "tolerations": [SYSTEM_TOLERATION],
            },
        )
        keda_ns = self._namespace(KEDA_NAMESPACE)
        # The chart's top-level tolerations apply to the operator, metrics server and webhooks.
        keda = self._release(
            "keda",
            KEDA_NAMESPACE,
            {"crds": {"install": True}, "tolerations": [SYSTEM_TOLERATION]},
            [keda_ns],
        )
        # The add-on's objects are KEDA ScaledObjects: KEDA's CRDs must exist first.
        self._release(
            "keda-http-add-on",
            KEDA_NAMESPACE,
            {
                "crds": {"install": True},
                "operator": {"tolerations": [SYSTEM_TOLERATION]},
                "scaler": {"tolerations": [SYSTEM_TOLERATION]},
                "interceptor": {"proxy": proxy, "tolerations": [SYSTEM_TOLERATION]},
            },
            [keda],
        )

        policy = pulumi.Output.from_input(args.cluster.name).apply(autoscaler_policy)
        autoscaler_identity = self._pod_identity(
            "cluster-autoscaler", AUTOSCALER_SERVICE_ACCOUNT, policy
        )
        self._release(
            "cluster-autoscaler",
            SYSTEM_NAMESPACE,
            {
                "cloudProvider": "aws",
                "awsRegion": args.cluster.region,
                "autoDiscovery": {"clusterName": args.cluster.name},
                "image": {"tag": image_tag},
                "rbac": {"serviceAccount": {"create": True, "name": AUTOSCALER_SERVICE_ACCOUNT}},
                "tolerations": [SYSTEM_TOLERATION],
                "extraArgs": {
                    # GPU pools of one shape spread across zones are one pool to scale.
                    "balance-similar-node-groups": True,
                    "expander": "least-waste",
                    # DaemonSet and system pods must not pin an idle GPU node.
                    "skip-nodes-with-system-pods": False,
                    # Model caches live in emptyDir; they must not pin a node either.
                    "skip-nodes-with-local-storage": False,
                    "scale-down-unneeded-time": "5m",
                    "scale-down-delay-after-add": "5m",
                    "scale-down-utilization-threshold": 0.5,
                },
            },
            autoscaler_identity,
        )

        if args.load_balancer_controller:
            lbc_policy = load_balancer_controller_policy()
            lbc_identity = self._pod_identity(
                "aws-load-balancer-controller", LBC_SERVICE_ACCOUNT, lbc_policy
            )
            self._release(
                "aws-load-balancer-controller",
                SYSTEM_NAMESPACE,
                {
                    "clusterName": args.cluster.name,
                    "region": args.cluster.region,
                    "vpcId": args.vpc_id,
                    "serviceAccount": {"create": True, "name": LBC_SERVICE_ACCOUNT},
                    "tolerations": [SYSTEM_TOLERATION],
                },
                lbc_identity,
            )

        self.register_outputs(
            {
                "releases": {key: release.name for key, release in self.releases.items()},
                "keda_namespace": self.keda_namespace,
                "interceptor_service": self.interceptor_service,
            }
        )

    def _namespace(self, namespace: str) -> k8s.core.v1.Namespace:
        return k8s.core.v1.Namespace(
            f"{self._name}-{namespace}",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=namespace),
            opts=pulumi.ResourceOptions(parent=self, provider=self._provider),
        )

    def _release(
        self,
        key: str,
        namespace: str,
        values: dict[str, Any],
        after: Sequence[pulumi.Resource] = (),
    ) -> k8s.helm.v3.Release:
        chart = CHARTS[key]
        release = k8s.helm.v3.Release(
            f"{self._name}-{key}",
            name=key,
            chart=key if chart.chart is None else chart.chart,
            version=chart.version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo),
            namespace=namespace,
            values=values,
            # A failed install or upgrade rolls back rather than leaving a half-applied chart.
            atomic=True,
            cleanup_on_fail=True,
            timeout=600,
            max_history=10,
            opts=pulumi.ResourceOptions(parent=self, provider=self._provider, depends_on=[*after]),
        )
        self.releases[key] = release
        return release

    def _pod_identity(
        self, key: str, service_account: str, policy: pulumi.Input[str]
    ) -> list[pulumi.Resource]:
        return pod_identity(
            f"{self._name}-{key}",
            self._cluster_name,
            SYSTEM_NAMESPACE,
            service_account,
            policy,
            self._tags,
            self,
        )
