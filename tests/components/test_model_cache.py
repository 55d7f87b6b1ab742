"""ModelCache: the node's model cache as a DaemonSet in a locked-down namespace, under mocks; and
how the Platform wires it to the tenants and services when the environment turns it on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from fermion.components.inference_service import InferenceServiceArgs, ServiceArgsError
from fermion.components.model_cache import (
    MODEL_CACHE_LABELS,
    ModelCache,
    ModelCacheArgs,
    ModelCacheArgsError,
    model_cache_egress_policy_spec,
    model_cache_url,
)
from fermion.components.node_group import GPU_TAINT_KEY
from fermion.components.tenant import Tenant, TenantArgs, TenantQuota
from fermion.environments import load_shapes

from ..network_policies import Pod, connection_allowed
from .conftest import Recorder, core, plain, settle, tolerates
from .test_platform import _platform

IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/fermion/runtime:0123456789abcdef"


def _kubernetes(mocks: Recorder) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for r in mocks.resources:
        if r.typ.startswith("kubernetes:") and "kind" in r.inputs:
            found.setdefault(str(r.inputs["kind"]), []).append(plain(r.inputs))
    return found


def _cache(mocks: Recorder, **overrides: Any) -> dict[str, list[dict[str, Any]]]:
    args = {
        "image": IMAGE,
        "cluster": core(),
        "tenant_namespaces": ("search", "ads"),
        "size_gib": 40,
    }
    ModelCache("cache", ModelCacheArgs(**{**args, **overrides}))
    settle()
    return _kubernetes(mocks)


def test_every_object_validates_in_a_restricted_namespace(mocks: Recorder) -> None:
    objects = _cache(mocks)
    assert sorted(objects) == ["DaemonSet", "Namespace", "NetworkPolicy", "Service"]
    for kind, items in objects.items():
        for obj in items:
            kubernetes_validate.validate(obj, "1.34.0", strict=True)
            if kind != "Namespace":
                assert obj["metadata"]["namespace"] == "fermion-model-cache"
    (namespace,) = objects["Namespace"]
    labels = namespace["metadata"]["labels"]
    assert {labels[f"pod-security.kubernetes.io/{m}"] for m in ("enforce", "audit", "warn")} == {
        "restricted"
    }


def test_blobs_live_in_a_sized_empty_dir_and_never_on_a_node_path(mocks: Recorder) -> None:
    (daemon_set,) = _cache(mocks)["DaemonSet"]
    pod = daemon_set["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "blobs", "emptyDir": {"sizeLimit": "40Gi"}}]
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    args = container["args"]
    assert args[:3] == ["python", "-m", "server.node_cache"]
    assert args[args.index("--dir") + 1] == container["volumeMounts"][0]["mountPath"]
    assert int(args[args.index("--max-bytes") + 1]) == int(40 * (1 << 30) * 0.9)
    resources = container["resources"]
    assert resources["requests"]["ephemeral-storage"] == "40Gi"
    assert "cpu" in resources["requests"]
    assert "memory" in resources["limits"]
    context = container["securityContext"]
    assert context["runAsNonRoot"] and context["readOnlyRootFilesystem"]
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False


def test_it_runs_on_gpu_nodes_and_only_on_nodes_that_run_services(mocks: Recorder) -> None:
    (daemon_set,) = _cache(mocks)["DaemonSet"]
    pod = daemon_set["spec"]["template"]["spec"]
    assert tolerates(
        pod["tolerations"], {"key": GPU_TAINT_KEY, "value": "true", "effect": "NO_SCHEDULE"}
    )
    assert not tolerates(
        pod["tolerations"], {"key": "CriticalAddonsOnly", "value": "true", "effect": "NO_SCHEDULE"}
    )
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {"matchExpressions": [{"key": "fermion.dev/shape", "operator": "Exists"}]}
    ]


def test_the_service_keeps_each_pod_on_its_own_nodes_cache(mocks: Recorder) -> None:
    (service,) = _cache(mocks)["Service"]
    assert service["spec"]["internalTrafficPolicy"] == "Local"
    assert service["spec"]["selector"] == MODEL_CACHE_LABELS
    assert model_cache_url() == (
        "http://fermion-model-cache.fermion-model-cache.svc.cluster.local:8090"
    )


def test_only_model_servers_of_the_tenants_get_in_and_nothing_gets_out(mocks: Recorder) -> None:
    objects = _cache(mocks)
    Tenant(
        "t",
        TenantArgs(
            name="search",
            namespace="search",
            quota=TenantQuota(gpus=0, cpu_millicores=8000, memory_mib=8192, pods=4),
            cluster=core(),
            model_cache_egress=model_cache_egress_policy_spec(),
        ),
    )
    settle()
    policies = _kubernetes(mocks)["NetworkPolicy"]
    assert len(policies) == len(objects["NetworkPolicy"]) + 3
    cache = Pod("fermion-model-cache", MODEL_CACHE_LABELS, ip="10.1.0.5")
    server = Pod("search", {"app.kubernetes.io/component": "inference"}, ip="10.1.0.6")
    assert connection_allowed(policies, server, cache, 8090)
    assert not connection_allowed(policies, server, cache, 8080)
    assert not connection_allowed(policies, cache, server, 8080)
    # Another pod of the tenant, and a model server of a namespace the cache was not given.
    assert not connection_allowed(policies, Pod("search", {"app": "x"}, ip="10.1.0.7"), cache, 8090)
    other = Pod("elsewhere", {"app.kubernetes.io/component": "inference"}, ip="10.1.0.8")
    assert not connection_allowed(policies, other, cache, 8090)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [({"size_gib": 0}, "at least 1 GiB"), ({"tenant_namespaces": ()}, "no tenant namespace")],
)
def test_bad_args_are_named(mocks: Recorder, overrides: dict[str, Any], fragment: str) -> None:
    args = {"image": IMAGE, "cluster": core(), "tenant_namespaces": ("search",), **overrides}
    with pytest.raises(ModelCacheArgsError, match=fragment):
        ModelCacheArgs(**args)


def test_a_service_cannot_set_the_cache_address_itself(mocks: Recorder) -> None:
    with pytest.raises(ServiceArgsError, match="FERMION_MODEL_CACHE_URL"):
        InferenceServiceArgs(
            name="m",
            image=IMAGE,
            shape=load_shapes().get("cpu.large"),
            cluster=core(),
            model_uri="s3://b/m/1/",
            env={"FERMION_MODEL_CACHE_URL": "http://elsewhere:80"},
        )


def _environment(enabled: bool) -> dict[str, Any]:
    return {
        "node_pools": [
            {"name": "cpu", "shape": "cpu.large", "size": {"min": 1, "max": 4}},
            {"name": "gpu", "shape": "gpu.l4", "size": {"min": 0, "max": 2}},
        ],
        "services": [
            {"name": "vision", "shape": "gpu.l4", "inputs": ["x:FP32:-1,4"]},
            {"name": "tabular", "shape": "cpu.large", "inputs": ["x:FP32:-1,4"]},
        ],
        "model_cache": {"enabled": enabled, "size_gib": 60},
    }


def test_the_platform_wires_the_cache_to_every_service_when_on(
    mocks: Recorder, tmp_path: Path
) -> None:
    platform = _platform(mocks, tmp_path, _environment(enabled=True))
    assert platform.model_cache is not None
    objects = _kubernetes(mocks)
    (daemon_set,) = objects["DaemonSet"]
    images = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
        for d in objects["Deployment"]
    }
    # The CPU service's image: the cache needs no CUDA.
    assert daemon_set["spec"]["template"]["spec"]["containers"][0]["image"] == images["tabular"]
    for deployment in objects["Deployment"]:
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {"name": "FERMION_MODEL_CACHE_URL", "value": platform.model_cache.url} in env
    names = {p["metadata"]["name"] for p in objects["NetworkPolicy"]}
    assert "allow-model-cache-egress" in names


def test_the_platform_declares_nothing_of_the_cache_when_off(
    mocks: Recorder, tmp_path: Path
) -> None:
    platform = _platform(mocks, tmp_path, _environment(enabled=False))
    assert platform.model_cache is None
    objects = _kubernetes(mocks)
    assert "DaemonSet" not in objects
    assert not mocks.of_type("fermion:index:ModelCache")
    for deployment in objects["Deployment"]:
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        assert all(v["name"] != "FERMION_MODEL_CACHE_URL" for v in env)
    assert "allow-model-cache-egress" not in {
        p["metadata"]["name"] for p in objects["NetworkPolicy"]
    }
