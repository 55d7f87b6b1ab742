"""The node's model cache in the planned `prod` environment, turned on: its DaemonSet keeps its
blobs in an emptyDir with a size limit (no node path), its Service keeps each pod on its own
node, model servers reach it and nothing else does, it reaches nobody, every object validates
against Kubernetes' schema, and the policy pack finds nothing in it."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from fermion.cli import app
from fermion.components.model_cache import MODEL_CACHE_LABELS, MODEL_CACHE_PORT, model_cache_url
from fermion.environments.stack_files import load_environment
from fermion.environments.tenancy import MODEL_CACHE_NAMESPACE
from fermion.stacks.plan import Plan, plan_environment

from ..conftest import STACKS, plan_objects
from ..network_policies import Pod, connection_allowed

S3 = Pod("(internet)", {}, ip="52.216.0.10")
DNS = Pod("kube-system", {"k8s-app": "kube-dns"}, ip="10.50.1.6")


def _stack_with_cache(folder: Path, size_gib: int = 50) -> Path:
    document = yaml.safe_load((STACKS / "Pulumi.prod.yaml").read_text())
    document["config"]["fermion:environment"]["model_cache"] = {
        "enabled": True,
        "size_gib": size_gib,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Pulumi.prod.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _stack_with_cache(tmp_path_factory.mktemp("stacks"))


@pytest.fixture(scope="module")
def plan(stacks: Path) -> Plan:
    return plan_environment(load_environment("prod", stacks))


@pytest.fixture(scope="module")
def plan_without(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    return plan_environment(load_environment("prod", STACKS))


def _serving_pods(plan: Plan) -> list[Pod]:
    return [
        Pod(
            d["metadata"]["namespace"],
            d["spec"]["template"]["metadata"]["labels"],
            ip=f"10.50.2.{i + 10}",
        )
        for i, d in enumerate(plan_objects(plan, "Deployment"))
    ]


def _cache_pod(plan: Plan) -> Pod:
    (daemon_set,) = plan_objects(plan, "DaemonSet")
    return Pod(
        daemon_set["metadata"]["namespace"],
        daemon_set["spec"]["template"]["metadata"]["labels"],
        ip="10.50.3.10",
    )


def test_the_cache_keeps_its_blobs_in_a_sized_empty_dir_on_each_service_node(plan: Plan) -> None:
    (daemon_set,) = plan_objects(plan, "DaemonSet")
    assert daemon_set["metadata"]["namespace"] == MODEL_CACHE_NAMESPACE
    pod = daemon_set["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "blobs", "emptyDir": {"sizeLimit": "50Gi"}}]
    assert not any("hostPath" in v for v in pod["volumes"])
    (container,) = pod["containers"]
    assert container["args"][:3] == ["python", "-m", "server.node_cache"]
    budget = int(container["args"][container["args"].index("--max-bytes") + 1])
    assert budget < 50 << 30  # under the emptyDir's limit, which the kubelet evicts past
    assert container["resources"]["requests"]["ephemeral-storage"] == "50Gi"
    assert container["resources"]["limits"]["ephemeral-storage"] == "50Gi"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # The runtime image the services run: one the environment builds anyway.
    images = {
        d["spec"]["template"]["spec"]["containers"][0]["image"]
        for d in plan_objects(plan, "Deployment")
    }
    assert container["image"] in images
    namespace = next(
        n for n in plan_objects(plan, "Namespace") if n["metadata"]["name"] == MODEL_CACHE_NAMESPACE
    )
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_a_pod_reaches_only_the_cache_on_its_own_node(plan: Plan) -> None:
    services = [
        s
        for s in plan_objects(plan, "Service")
        if s["metadata"]["namespace"] == MODEL_CACHE_NAMESPACE
    ]
    (service,) = services
    assert service["spec"]["internalTrafficPolicy"] == "Local"
    assert "type" not in service["spec"]
    assert service["spec"]["selector"] == MODEL_CACHE_LABELS


def test_every_model_server_is_told_where_the_cache_is(plan: Plan) -> None:
    deployments = plan_objects(plan, "Deployment")
    assert deployments
    for deployment in deployments:
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {"name": "FERMION_MODEL_CACHE_URL", "value": model_cache_url()} in env


def test_model_servers_reach_the_cache_and_the_cache_reaches_no_one(plan: Plan) -> None:
    policies = plan_objects(plan, "NetworkPolicy")
    cache = _cache_pod(plan)
    servers = _serving_pods(plan)
    assert len({s.namespace for s in servers}) >= 2  # prod has two tenants
    for server in servers:
        assert connection_allowed(policies, server, cache, MODEL_CACHE_PORT)
        assert not connection_allowed(policies, server, cache, 22)
        for port in (8080, 80, 443):
            assert not connection_allowed(policies, cache, server, port)
    for target in (S3, DNS):
        assert not connection_allowed(policies, cache, target, 443)
        assert not connection_allowed(policies, cache, target, 53)
    # Only model servers: another pod of a tenant namespace, or a pod elsewhere, is refused.
    for stranger in (
        Pod(servers[0].namespace, {"app": "debug-shell"}, ip="10.50.4.1"),
        Pod("monitoring", {"app": "prometheus"}, ip="10.50.4.2"),
        Pod("monitoring", dict(servers[0].labels), ip="10.50.4.3"),
    ):
        assert not connection_allowed(policies, stranger, cache, MODEL_CACHE_PORT)


def test_the_policy_pack_finds_nothing_more_with_the_cache(plan: Plan, plan_without: Plan) -> None:
    def key(plan: Plan) -> list[tuple[str, str, str]]:
        return sorted((f.policy, f.urn, f.message) for f in plan.findings)

    assert key(plan) == key(plan_without)
    assert not [f for f in plan.findings if "model-cache" in f.urn]


def test_every_manifest_validates_and_validate_shows_the_cache(
    stacks: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["plan", "prod", "--stacks-dir", str(stacks), "--manifests", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    kinds = set()
    for path in sorted((tmp_path / "out").glob("*.yaml")):
        obj = yaml.safe_load(path.read_text())
        if "kind" not in obj or obj["kind"] == "HTTPScaledObject":
            continue  # a Helm release's values; KEDA's CRD is checked by test_tenancy_plan
        if obj["metadata"].get("namespace") == MODEL_CACHE_NAMESPACE or obj["kind"] == "DaemonSet":
            kinds.add(obj["kind"])
        kubernetes_validate.validate(obj, "1.34.0", strict=True)
    assert {"DaemonSet", "Service", "NetworkPolicy"} <= kinds
    shown = runner.invoke(app, ["validate", "prod", "--stacks-dir", str(stacks)])
    assert shown.exit_code == 0, shown.output
    assert "model cache" in shown.output
    assert "on, 50 GiB" in shown.output


def test_a_cache_too_large_for_a_pools_disks_is_refused_with_the_fix(tmp_path: Path) -> None:
    stacks = _stack_with_cache(tmp_path / "stacks", size_gib=150)
    result = CliRunner().invoke(app, ["validate", "prod", "--stacks-dir", str(stacks)])
    assert result.exit_code == 1
    assert "model_cache.size_gib" in result.output
    assert "Lower model_cache.size_gib to 100 or less" in result.output
    assert "Traceback" not in result.output
