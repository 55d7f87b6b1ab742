from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from fermion.components.cluster_addons import (
    AUTOSCALER_IMAGE_TAGS,
    CHARTS,
    GPU_NODE_LABEL,
    ClusterAddons,
    ClusterAddonsArgs,
    MissingVpcIdError,
    UnsupportedKubernetesVersionError,
    autoscaler_image_tag,
    load_balancer_controller_policy,
)
from fermion.components.node_group import shape_labels
from fermion.components.system_node_group import SYSTEM_TAINT
from fermion.environments import load_shapes

from .conftest import Recorder, Registration, core, resolve, settle, tolerates

RELEASE = "kubernetes:helm.sh/v3:Release"
ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
ROLE_ARN = "arn:aws:iam::123456789012:role/r"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
ALWAYS = {"metrics-server", "keda", "keda-http-add-on", "cluster-autoscaler"}


def _addons(mocks: Recorder, **overrides: Any) -> tuple[ClusterAddons, pulumi.ProviderResource]:
    mocks.outputs["aws:iam/role:Role"] = {"arn": ROLE_ARN, "name": "r"}
    cluster = core()
    values: dict[str, Any] = {"cluster": cluster}
    values.update(overrides)
    addons = ClusterAddons("addons", ClusterAddonsArgs(**values))
    settle()
    return addons, cluster.provider


def _releases(mocks: Recorder) -> dict[str, dict[str, Any]]:
    return {r.inputs["name"]: dict(r.inputs) for r in mocks.of_type(RELEASE)}


def _associations(mocks: Recorder) -> dict[str, dict[str, Any]]:
    return {a.inputs["serviceAccount"]: dict(a.inputs) for a in mocks.of_type(ASSOCIATION)}


def _inline_policies(mocks: Recorder) -> list[dict[str, Any]]:
    return [json.loads(p.inputs["policy"]) for p in mocks.of_type("aws:iam/rolePolicy:RolePolicy")]


def test_every_release_is_pinned(mocks: Recorder) -> None:
    _addons(mocks)
    releases = _releases(mocks)
    assert set(releases) == ALWAYS | {"nvidia-device-plugin", "dcgm-exporter"}
    for key, release in releases.items():
        chart = CHARTS[key]
        assert release["chart"] == (key if chart.chart is None else chart.chart)
        assert release["version"] == chart.version
        assert release["version"][0].isdigit()
        assert release["repositoryOpts"]["repo"] == chart.repo
        assert chart.repo.startswith("https://")
        assert release["namespace"]
        assert release["atomic"] is True
    assert releases["keda"]["version"] == "2.20.1"
    assert releases["keda-http-add-on"]["chart"] == "keda-add-ons-http"


def test_gpu_daemonsets_tolerate_the_gpu_taint_and_run_only_on_gpu_nodes(mocks: Recorder) -> None:
    _addons(mocks)
    releases = _releases(mocks)
    for key in ("nvidia-device-plugin", "dcgm-exporter"):
        values = releases[key]["values"]
        assert GPU_TOLERATION in values["tolerations"]
        (term,) = values["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        assert {"key": GPU_NODE_LABEL, "operator": "Exists"} in term["matchExpressions"]
        assert releases[key]["namespace"] == "nvidia"
    # Bottlerocket's NVIDIA nodes run their own device plugin; the exporter still runs there.
    (plugin_term,) = releases["nvidia-device-plugin"]["values"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert {
        "key": "fermion.dev/ami",
        "operator": "NotIn",
        "values": ["bottlerocket"],
    } in plugin_term["matchExpressions"]
    assert releases["nvidia-device-plugin"]["values"]["gfd"] == {"enabled": False}
    assert releases["dcgm-exporter"]["values"]["serviceMonitor"] == {"enabled": False}
    namespaces = {
        n.inputs["metadata"]["name"] for n in mocks.of_type("kubernetes:core/v1:Namespace")
    }
    assert namespaces == {"nvidia", "keda"}


def test_the_gpu_node_label_is_on_gpu_nodes_only() -> None:
    shapes = load_shapes()
    assert GPU_NODE_LABEL in shape_labels(shapes.get("gpu.a10"))
    assert GPU_NODE_LABEL in shape_labels(shapes.get("gpu.8xh100-sxm"))
    assert GPU_NODE_LABEL not in shape_labels(shapes.get("cpu.small"))


def test_without_gpus_there_is_no_nvidia_software(mocks: Recorder) -> None:
    addons, _ = _addons(mocks, gpu=False)
    assert set(_releases(mocks)) == ALWAYS
    assert set(addons.releases) == ALWAYS
    namespaces = {
        n.inputs["metadata"]["name"] for n in mocks.of_type("kubernetes:core/v1:Namespace")
    }
    assert namespaces == {"keda"}


def test_cluster_autoscaler_finds_this_cluster_with_the_image_of_its_version(
    mocks: Recorder,
) -> None:
    _addons(mocks, kubernetes_version="1.31")
    values = _releases(mocks)["cluster-autoscaler"]["values"]
    assert values["autoDiscovery"]["clusterName"] == "fermion-dev"
    assert values["awsRegion"] == "us-west-2"
    assert values["cloudProvider"] == "aws"
    assert values["image"]["tag"] == AUTOSCALER_IMAGE_TAGS["1.31"] == "v1.31.2"
    assert values["extraArgs"]["balance-similar-node-groups"] is True
    assert values["extraArgs"]["skip-nodes-with-system-pods"] is False
    assert values["extraArgs"]["expander"] == "least-waste"


def test_the_default_kubernetes_version_has_an_autoscaler_image(mocks: Recorder) -> None:
    _addons(mocks)
    values = _releases(mocks)["cluster-autoscaler"]["values"]
    assert values["image"]["tag"] == AUTOSCALER_IMAGE_TAGS["1.34"]


def test_patch_versions_pick_their_minor_s_image() -> None:
    assert autoscaler_image_tag("1.33.4") == autoscaler_image_tag("v1.33") == "v1.33.5"
    assert all(tag.startswith(f"v{minor}.") for minor, tag in AUTOSCALER_IMAGE_TAGS.items())


def test_cluster_autoscaler_gets_its_role_through_pod_identity(
    mocks: Recorder, registrations: list[Registration]
) -> None:
    _addons(mocks)
    values = _releases(mocks)["cluster-autoscaler"]["values"]
    account = values["rbac"]["serviceAccount"]
    assert account["create"] is True
    association = _associations(mocks)[account["name"]]
    assert association["namespace"] == _releases(mocks)["cluster-autoscaler"]["namespace"]
    assert association["clusterName"] == "fermion-dev"
    assert association["roleArn"] == ROLE_ARN
    (role,) = mocks.of_type("aws:iam/role:Role")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert "sts:TagSession" in trust["Action"]
    (policy,) = _inline_policies(mocks)
    discover, scale = policy["Statement"]
    assert "eks:DescribeNodegroup" in discover["Action"]
    assert not any(
        a.startswith(("autoscaling:Set", "autoscaling:Terminate")) for a in discover["Action"]
    )
    assert set(scale["Action"]) == {
        "autoscaling:SetDesiredCapacity",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
    }
    condition = scale["Condition"]["StringEquals"]
    assert condition == {"aws:ResourceTag/k8s.io/cluster-autoscaler/fermion-dev": "owned"}
    # The release waits for the association, so the pods start with their role.
    urns = {(r.type, r.name): r.urn for r in registrations}
    release = next(
        r for r in registrations if r.name == "addons-cluster-autoscaler" and r.type == RELEASE
    )
    assert urns[(ASSOCIATION, "addons-cluster-autoscaler")] in release.dependencies


def test_unsupported_kubernetes_version_is_refused_with_the_fix(mocks: Recorder) -> None:
    with pytest.raises(UnsupportedKubernetesVersionError) as raised:
        _addons(mocks, kubernetes_version="1.29")
    message = str(raised.value)
    assert "'1.29'" in message
    assert "1.30" in message and "1.35" in message
    assert "AUTOSCALER_IMAGE_TAGS" in message
    assert not mocks.of_type(RELEASE)


def test_the_load_balancer_controller_is_off_by_default(mocks: Recorder) -> None:
    addons, _ = _addons(mocks)
    assert "aws-load-balancer-controller" not in addons.releases
    assert set(_associations(mocks)) == {"cluster-autoscaler"}


def test_the_load_balancer_controller_when_asked(
    mocks: Recorder, registrations: list[Registration]
) -> None:
    addons, _ = _addons(mocks, load_balancer_controller=True, vpc_id="vpc-123")
    assert "aws-load-balancer-controller" in addons.releases
    release = _releases(mocks)["aws-load-balancer-controller"]
    assert release["version"] == CHARTS["aws-load-balancer-controller"].version
    values = release["values"]
    assert values["clusterName"] == "fermion-dev"
    assert values["region"] == "us-west-2"
    assert values["vpcId"] == "vpc-123"
    association = _associations(mocks)[values["serviceAccount"]["name"]]
    assert association["namespace"] == release["namespace"] == "kube-system"
    policies = _inline_policies(mocks)
    assert json.loads(load_balancer_controller_policy()) in policies
    lbc = next(
        r
        for r in registrations
        if r.name == "addons-aws-load-balancer-controller" and r.type == RELEASE
    )
    urns = {(r.type, r.name): r.urn for r in registrations}
    assert urns[(ASSOCIATION, "addons-aws-load-balancer-controller")] in lbc.dependencies


def test_the_load_balancer_controller_policy_is_the_published_one() -> None:
    policy = json.loads(load_balancer_controller_policy())
    actions = {
        a
        for s in policy["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert {"elasticloadbalancing:CreateLoadBalancer", "ec2:GetSecurityGroupsForVpc"} <= actions
    # It must fit AWS's limit on a role's inline policies (10,240 characters).
    assert len(load_balancer_controller_policy()) < 10_240


def test_the_load_balancer_controller_needs_the_vpc_id(mocks: Recorder) -> None:
    with pytest.raises(MissingVpcIdError, match="vpc_id"):
        _addons(mocks, load_balancer_controller=True)


def test_keda_and_its_http_add_on(mocks: Recorder, registrations: list[Registration]) -> None:
    addons, _ = _addons(mocks)
    assert addons.keda_namespace == "keda"
    releases = _releases(mocks)
    assert releases["keda"]["namespace"] == releases["keda-http-add-on"]["namespace"] == "keda"
    proxy = releases["keda-http-add-on"]["values"]["interceptor"]["proxy"]
    chart = CHARTS["keda-http-add-on"].chart
    assert addons.interceptor_service == (
        f"{chart}-{proxy['service']}.keda.svc.cluster.local:{int(proxy['port'])}"
    )
    assert (
        addons.interceptor_service
        == "keda-add-ons-http-interceptor-proxy.keda.svc.cluster.local:8080"
    )
    by_name = {r.name: r for r in registrations if r.type == RELEASE}
    assert by_name["addons-keda"].urn in by_name["addons-keda-http-add-on"].dependencies


def _pod_tolerations(key: str, values: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each workload of a release that may run on the system nodes, and its tolerations, as
    the release's chart reads them."""
    if key == "keda-http-add-on":
        return {
            part: values[part].get("tolerations", [])
            for part in ("operator", "scaler", "interceptor")
        }
    # The other charts take one top-level list for all their pods (KEDA's operator, metrics
    # server and webhooks alike).
    return {key: values.get("tolerations", [])}


def test_every_release_that_runs_on_the_system_nodes_tolerates_their_taint(
    mocks: Recorder,
) -> None:
    _addons(mocks, load_balancer_controller=True, vpc_id="vpc-123")
    taint = SYSTEM_TAINT.node_group_taint()
    releases = _releases(mocks)
    on_system_nodes = set(releases) - {"nvidia-device-plugin", "dcgm-exporter"}
    assert on_system_nodes == ALWAYS | {"aws-load-balancer-controller"}
    for key in on_system_nodes:
        for workload, tolerations in _pod_tolerations(key, releases[key]["values"]).items():
            assert tolerates(tolerations, taint), workload
    # The GPU daemonsets run on GPU nodes only, where the system taint never is.
    assert not tolerates(releases["dcgm-exporter"]["values"]["tolerations"], taint)


def test_every_child_belongs_to_the_component_and_uses_the_provider(
    mocks: Recorder, registrations: list[Registration]
) -> None:
    addons, provider = _addons(mocks, load_balancer_controller=True, vpc_id="vpc-123")
    component = resolve(addons.urn)
    provider_urn = resolve(provider.urn)
    children = [r for r in registrations if r.urn not in (component, provider_urn)]
    assert len(children) > 10
    assert all(r.parent == component for r in children), [
        r.name for r in children if r.parent != component
    ]
    kubernetes = [r for r in children if r.type.startswith("kubernetes:")]
    assert len(kubernetes) == 9
    assert all(r.provider.startswith(provider_urn + "::") for r in kubernetes)
