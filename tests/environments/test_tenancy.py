from __future__ import annotations

from typing import Any

import pytest

from fermion.environments import parse_environment
from fermion.environments.tenancy import DEFAULT_NAMESPACE, Demand, pod_demand, tenant_demand

from .test_spec import assert_problem, put


def _two_tenants(prod: dict[str, Any]) -> dict[str, Any]:
    prod["tenants"] = [
        {"name": "search", "quota": {"gpus": 16, "cpu": 200, "memory_gib": 800, "pods": 40}},
        {
            "name": "ranking",
            "namespace": "ranking-models",
            "quota": {"gpus": 8, "cpu": 100, "memory_gib": 400, "pods": 20},
        },
    ]
    for service in prod["services"]:
        service["tenant"] = "search"
    prod["services"][2]["tenant"] = "ranking"
    return prod


def test_without_tenants_every_service_is_in_the_default_tenant(dev: dict[str, Any]) -> None:
    spec = parse_environment(dev, "dev")
    [tenant] = spec.tenants_in_effect
    assert (tenant.name, tenant.namespace_name) == ("default", DEFAULT_NAMESPACE)
    assert {spec.namespace_of(s) for s in spec.services} == {DEFAULT_NAMESPACE}
    # Its quota is exactly what the services need at full scale, plus one surge pod.
    demand = tenant_demand(spec.services, spec.shapes)
    assert tenant.quota.gpus == demand.gpus
    assert tenant.quota.pods == demand.pods == sum(s.replicas.max for s in spec.services) + 1


def test_the_demand_counts_each_replica_and_one_surge_pod(dev: dict[str, Any]) -> None:
    spec = parse_environment(dev, "dev")
    service = spec.services[0]
    pod = pod_demand(spec.shapes.get(service.shape))
    assert tenant_demand([service], spec.shapes) == pod.times(service.replicas.max + 1)
    assert tenant_demand([], spec.shapes) == Demand()


def test_declared_tenants_get_their_own_namespaces(prod: dict[str, Any]) -> None:
    spec = parse_environment(_two_tenants(prod), "prod", region="us-east-1")
    namespaces = {s.name: spec.namespace_of(s) for s in spec.services}
    assert namespaces[spec.services[0].name] == "search"
    assert namespaces[spec.services[2].name] == "ranking-models"


def test_a_service_names_a_declared_tenant(prod: dict[str, Any]) -> None:
    data = _two_tenants(prod)
    data["services"][0]["tenant"] = "serch"
    problem = assert_problem(data, "services[0].tenant", "no tenant of", region="us-east-1")
    assert "ranking, search" in str(problem)
    # A service that names none belongs to `default`, which must then be declared too.
    del data["services"][0]["tenant"]
    assert_problem(data, "services[0].tenant", "no tenant of this name", region="us-east-1")


def test_a_tenant_without_tenants_declared_is_refused(dev: dict[str, Any]) -> None:
    put(dev, "services[0].tenant", "research")
    problem = assert_problem(dev, "services[0].tenant", "no tenants are declared")
    assert "Declare the tenant under tenants" in str(problem)


def test_two_tenants_never_share_a_namespace(prod: dict[str, Any]) -> None:
    data = _two_tenants(prod)
    data["tenants"][1]["namespace"] = "search"
    problem = assert_problem(data, "tenants[1].namespace", "already uses", region="us-east-1")
    assert "'search'" in str(problem)


@pytest.mark.parametrize("namespace", ["kube-system", "keda", "default", "nvidia"])
def test_system_namespaces_are_not_tenants(prod: dict[str, Any], namespace: str) -> None:
    data = _two_tenants(prod)
    data["tenants"][1]["namespace"] = namespace
    assert_problem(data, "tenants[1].namespace", "belongs to Kubernetes", region="us-east-1")


def test_tenant_names_are_unique(prod: dict[str, Any]) -> None:
    data = _two_tenants(prod)
    data["tenants"][1]["name"] = "search"
    assert_problem(data, "tenants[1].name", "must be unique", region="us-east-1")


def test_a_quota_too_small_for_its_services_names_the_numbers(prod: dict[str, Any]) -> None:
    data = _two_tenants(prod)
    data["tenants"][1]["quota"]["gpus"] = 1
    data["tenants"][1]["quota"]["pods"] = 2
    spec_services = [s for s in data["services"] if s["tenant"] == "ranking"]
    problem = assert_problem(data, "tenants[1].quota", "more than its quota", region="us-east-1")
    text = str(problem)
    expected_pods = sum(s.get("replicas", {}).get("max", 2) for s in spec_services) + 1
    assert f"pods: needs {expected_pods}, quota 2" in text
    assert "gpus: needs" in text and "quota 1" in text
    assert "replicas.max" in text


def test_a_quota_is_required_of_a_declared_tenant(prod: dict[str, Any]) -> None:
    data = _two_tenants(prod)
    del data["tenants"][0]["quota"]
    assert_problem(data, "tenants[0].quota", "", region="us-east-1")
