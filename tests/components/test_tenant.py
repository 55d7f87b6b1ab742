"""Tenant: a namespace with its quota, container defaults and network policies, under mocks."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from fermion.components.tenant import Tenant, TenantArgs, TenantArgsError, TenantQuota

from .conftest import Recorder, core, plain, settle

QUOTA = TenantQuota(gpus=4, cpu_millicores=32_000, memory_mib=128 * 1024, pods=12)


def _tenant(mocks: Recorder) -> dict[str, list[dict[str, Any]]]:
    Tenant("t", TenantArgs(name="search", namespace="search", quota=QUOTA, cluster=core()))
    settle()
    found: dict[str, list[dict[str, Any]]] = {}
    for r in mocks.resources:
        if not r.typ.startswith("kubernetes:"):
            continue
        found.setdefault(str(r.inputs["kind"]), []).append(plain(r.inputs))
    return found


def test_every_object_validates_and_lives_in_the_tenants_namespace(mocks: Recorder) -> None:
    objects = _tenant(mocks)
    assert sorted(objects) == ["LimitRange", "Namespace", "NetworkPolicy", "ResourceQuota"]
    for kind, items in objects.items():
        for obj in items:
            kubernetes_validate.validate(obj, "1.34.0", strict=True)
            if kind != "Namespace":
                assert obj["metadata"]["namespace"] == "search"


def test_the_namespace_enforces_the_restricted_profile(mocks: Recorder) -> None:
    (namespace,) = _tenant(mocks)["Namespace"]
    labels = namespace["metadata"]["labels"]
    assert labels["fermion.dev/tenant"] == "search"
    assert {labels[f"pod-security.kubernetes.io/{m}"] for m in ("enforce", "audit", "warn")} == {
        "restricted"
    }


def test_the_quota_caps_gpus_cpu_memory_and_pods(mocks: Recorder) -> None:
    (quota,) = _tenant(mocks)["ResourceQuota"]
    assert quota["spec"]["hard"] == {
        "requests.cpu": "32000m",
        "requests.memory": "131072Mi",
        "limits.memory": "131072Mi",
        "requests.nvidia.com/gpu": "4",
        "pods": "12",
    }


def test_every_container_gets_requests_and_a_memory_limit(mocks: Recorder) -> None:
    (limits,) = _tenant(mocks)["LimitRange"]
    (rule,) = limits["spec"]["limits"]
    assert rule["type"] == "Container"
    assert set(rule["defaultRequest"]) == {"cpu", "memory"} and "memory" in rule["default"]


def test_all_traffic_is_denied_but_dns_credentials_and_https_out(mocks: Recorder) -> None:
    deny, egress = _tenant(mocks)["NetworkPolicy"]
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert egress["spec"]["policyTypes"] == ["Egress"]
    ports = [tuple(p["port"] for p in rule["ports"]) for rule in egress["spec"]["egress"]]
    assert ports == [(53, 53), (80,), (443,)]
    assert egress["spec"]["egress"][1]["to"] == [{"ipBlock": {"cidr": "169.254.170.23/32"}}]


@pytest.mark.parametrize(
    "quota",
    [TenantQuota(-1, 1000, 1024, 1), TenantQuota(0, 1000, 1024, 0)],
)
def test_a_quota_no_cluster_could_apply_is_refused(mocks: Recorder, quota: TenantQuota) -> None:
    with pytest.raises(TenantArgsError, match="tenant 'x'"):
        TenantArgs(name="x", namespace="x", quota=quota, cluster=core())
