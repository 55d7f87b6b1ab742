"""Tenants, tokens and public endpoints in the planned `dev` and `prod` environments."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from fermion.cli import app
from fermion.environments.stack_files import load_environment
from fermion.environments.tenancy import tenant_demand
from fermion.stacks.plan import SECRET, Plan, plan_environment

from ..conftest import STACKS, crd_schema, plan_objects
from ..network_policies import Pod, connection_allowed

INTERCEPTOR = Pod(
    "keda",
    {
        "app.kubernetes.io/component": "interceptor",
        "app.kubernetes.io/name": "http-add-on",
        "app.kubernetes.io/instance": "keda-http-add-on",
    },
    ip="10.50.1.5",
)
DNS = Pod("kube-system", {"k8s-app": "kube-dns"}, ip="10.50.1.6")
PROMETHEUS = Pod("monitoring", {"app": "prometheus"}, ip="10.50.1.7")
S3 = Pod("(internet)", {}, ip="52.216.0.10")
POD_IDENTITY_AGENT = Pod("(node)", {}, ip="169.254.170.23")


@pytest.fixture(scope="module", params=["dev", "prod"])
def planned(request: pytest.FixtureRequest) -> tuple[str, Plan]:
    env = str(request.param)
    return env, plan_environment(load_environment(env, STACKS))


@pytest.fixture(scope="module")
def prod() -> Plan:
    return plan_environment(load_environment("prod", STACKS))


def _pods(plan: Plan) -> dict[str, Pod]:
    """Each service's pod, as its Deployment's template makes it."""
    return {
        d["metadata"]["name"]: Pod(
            d["metadata"]["namespace"],
            d["spec"]["template"]["metadata"]["labels"],
            ip=f"10.50.2.{i + 10}",
        )
        for i, d in enumerate(plan_objects(plan, "Deployment"))
    }


def test_each_tenant_namespace_enforces_the_restricted_profile(planned: tuple[str, Plan]) -> None:
    env, plan = planned
    spec = load_environment(env, STACKS)
    namespaces = {
        n["metadata"]["name"]: n["metadata"].get("labels", {})
        for n in plan_objects(plan, "Namespace")
    }
    for tenant in spec.tenants_in_effect:
        labels = namespaces[tenant.namespace_name]
        for mode in ("enforce", "audit", "warn"):
            assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels["fermion.dev/tenant"] == tenant.name
    assert plan.outputs["namespaces"] == {t.name: t.namespace_name for t in spec.tenants_in_effect}


def test_each_tenant_has_its_quota_and_container_defaults(planned: tuple[str, Plan]) -> None:
    env, plan = planned
    spec = load_environment(env, STACKS)
    quotas = {
        q["metadata"]["namespace"]: q["spec"]["hard"] for q in plan_objects(plan, "ResourceQuota")
    }
    limits = {r["metadata"]["namespace"] for r in plan_objects(plan, "LimitRange")}
    for tenant in spec.tenants_in_effect:
        hard = quotas[tenant.namespace_name]
        assert hard["requests.nvidia.com/gpu"] == str(tenant.quota.gpus)
        assert hard["pods"] == str(tenant.quota.pods)
        assert hard["requests.cpu"] == f"{round(tenant.quota.cpu * 1000)}m"
        assert hard["requests.memory"] == f"{round(tenant.quota.memory_gib * 1024)}Mi"
        assert tenant.namespace_name in limits
        # The quota holds the tenant's services at full scale.
        own = [s for s in spec.services if s.tenant == tenant.name]
        assert tenant_demand(own, spec.shapes).pods <= tenant.quota.pods


def test_prods_two_tenants_have_different_quotas(prod: Plan) -> None:
    quotas = {
        q["metadata"]["namespace"]: q["spec"]["hard"] for q in plan_objects(prod, "ResourceQuota")
    }
    assert quotas["search"]["requests.nvidia.com/gpu"] == "16"
    assert quotas["search"]["requests.cpu"] == "64000m"
    assert quotas["analytics-models"]["requests.nvidia.com/gpu"] == "0"
    assert quotas["analytics-models"]["requests.memory"] == f"{216 * 1024}Mi"


def test_every_pod_selector_in_a_network_policy_matches_a_real_pod(
    planned: tuple[str, Plan],
) -> None:
    _, plan = planned
    pods = list(_pods(plan).values())
    policies = plan_objects(plan, "NetworkPolicy")
    assert policies
    for policy in policies:
        namespace = policy["metadata"]["namespace"]
        wanted = policy["spec"]["podSelector"].get("matchLabels", {})
        matched = [
            p
            for p in pods
            if p.namespace == namespace and all(p.labels.get(k) == v for k, v in wanted.items())
        ]
        assert matched, policy["metadata"]["name"]
    # Each tenant namespace denies everything it does not allow.
    deny = {
        p["metadata"]["namespace"]
        for p in policies
        if p["spec"]["podSelector"] == {}
        and sorted(p["spec"]["policyTypes"]) == ["Egress", "Ingress"]
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    }
    assert deny == {p.namespace for p in pods}


def test_tenants_cannot_reach_each_other(prod: Plan) -> None:
    pods = _pods(prod)
    policies = plan_objects(prod, "NetworkPolicy")
    embed, tabular, classifier = pods["embed"], pods["tabular"], pods["classifier"]
    assert embed.namespace != tabular.namespace
    for source, target in ((tabular, embed), (embed, tabular)):
        for port in (8080, 443, 80):
            assert not connection_allowed(policies, source, target, port)
    # Nor do two services of one tenant talk to each other directly.
    assert not connection_allowed(policies, classifier, embed, 8080)


def test_only_the_interceptor_and_metrics_scrapes_come_in(prod: Plan) -> None:
    pods = _pods(prod)
    policies = plan_objects(prod, "NetworkPolicy")
    for pod in pods.values():
        assert connection_allowed(policies, INTERCEPTOR, pod, 8080)
        assert connection_allowed(policies, PROMETHEUS, pod, 8080)
        assert not connection_allowed(policies, INTERCEPTOR, pod, 22)
        assert not connection_allowed(policies, DNS, pod, 8080)


def test_pods_reach_dns_their_credentials_and_https_only(prod: Plan) -> None:
    policies = plan_objects(prod, "NetworkPolicy")
    for pod in _pods(prod).values():
        assert connection_allowed(policies, pod, DNS, 53)
        assert connection_allowed(policies, pod, POD_IDENTITY_AGENT, 80)
        assert connection_allowed(policies, pod, S3, 443)
        assert not connection_allowed(policies, pod, S3, 80)
        assert not connection_allowed(policies, pod, INTERCEPTOR, 8080)


def test_every_service_reads_its_tokens_from_a_mounted_secret(planned: tuple[str, Plan]) -> None:
    env, plan = planned
    spec = load_environment(env, STACKS)
    secrets = {
        (s["metadata"]["namespace"], s["metadata"]["name"]): s for s in plan_objects(plan, "Secret")
    }
    for deployment in plan_objects(plan, "Deployment"):
        name = deployment["metadata"]["name"]
        namespace = deployment["metadata"]["namespace"]
        service = next(s for s in spec.services if s.name == name)
        assert namespace == spec.namespace_of(service)
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["auth-tokens"]["secret"]["secretName"] == f"{name}-tokens"
        assert {"name": "auth-tokens", "mountPath": "/var/run/fermion/auth", "readOnly": True} in (
            container["volumeMounts"]
        )
        # The plan never shows a token.
        assert secrets[(namespace, f"{name}-tokens")]["stringData"] == {"tokens": SECRET}
    assert plan.outputs["tokens"] == SECRET


def test_prods_public_service_is_https_through_the_interceptor(prod: Plan) -> None:
    (ingress,) = plan_objects(prod, "Ingress")
    assert ingress["metadata"]["namespace"] == "keda"
    assert ingress["spec"]["tls"] == [{"hosts": ["embed.ml.example.com"]}]
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"]["name"] == "keda-add-ons-http-interceptor-proxy"
    annotations = ingress["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/certificate-arn"].startswith(
        "arn:aws:acm:us-east-1:"
    )
    assert annotations["alb.ingress.kubernetes.io/inbound-cidrs"] == (
        "203.0.113.0/24,198.51.100.0/24"
    )
    # No load balancer bypasses the interceptor.
    assert all("type" not in s["spec"] for s in plan_objects(prod, "Service"))
    endpoints = prod.outputs["endpoints"]["embed"]
    assert endpoints["public_url"] == "https://embed.ml.example.com/v2/models/embed"


def test_every_manifest_plan_prod_writes_validates(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["plan", "prod", "--manifests", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "out").glob("*.yaml"))
    kinds = set()
    scaler_schema = crd_schema("http.keda.sh_httpscaledobjects.yaml")
    for path in files:
        obj = yaml.safe_load(path.read_text())
        if "kind" not in obj:
            continue  # a Helm release's values
        kinds.add(obj["kind"])
        if obj["kind"] == "HTTPScaledObject":
            jsonschema.validate(obj, scaler_schema)
        else:
            kubernetes_validate.validate(obj, "1.34.0", strict=True)
    assert {
        "Namespace",
        "ResourceQuota",
        "LimitRange",
        "NetworkPolicy",
        "Secret",
        "Ingress",
        "Deployment",
        "HTTPScaledObject",
    } <= kinds
