"""Tenants: which namespace each service runs in, and what its tenant's quota must hold.

An environment with no `tenants:` has one implicit tenant, `default`, in the `inference`
namespace, with a quota just large enough for its services. Declared tenants name their own
quotas, and the rules here refuse a service whose tenant could not hold it at full scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from fermion.environments.errors import SpecProblem
from fermion.environments.sections import ServiceSpec, TenantQuotaSpec, TenantSpec
from fermion.environments.shapes import Shape, ShapeCatalog

DEFAULT_TENANT = "default"
# The namespace services ran in before tenants existed; the implicit tenant keeps it.
DEFAULT_NAMESPACE = "inference"
# The namespace of the node's model cache (`model_cache:`), a system namespace of fermion's.
MODEL_CACHE_NAMESPACE = "fermion-model-cache"
# Kubernetes' own namespaces and those of the add-ons fermion installs.
RESERVED_NAMESPACES = (
    "default",
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "keda",
    "nvidia",
    MODEL_CACHE_NAMESPACE,
)


@dataclass(frozen=True)
class Demand:
    """What a set of pods requests together: GPUs, CPU (millicores), memory (MiB) and pods."""

    gpus: int = 0
    millicores: int = 0
    memory_mib: int = 0
    pods: int = 0

    def __add__(self, other: Demand) -> Demand:
        return Demand(
            self.gpus + other.gpus,
            self.millicores + other.millicores,
            self.memory_mib + other.memory_mib,
            self.pods + other.pods,
        )

    def times(self, count: int) -> Demand:
        return Demand(
            self.gpus * count, self.millicores * count, self.memory_mib * count, self.pods * count
        )


def pod_demand(shape: Shape) -> Demand:
    """One replica of a service on `shape`, as its pod spec requests it."""
    gpus = shape.gpu.count if shape.gpu is not None else 0
    return Demand(gpus, shape.pod_millicores, shape.pod_memory_mib, 1)


def tenant_demand(services: Sequence[ServiceSpec], shapes: ShapeCatalog) -> Demand:
    """What a tenant's services request at their maximum scale, plus room for the largest one's
    rollout surge: a rollout adds a replica before it removes one, and a quota that refused it
    would stall the rollout."""
    total = Demand()
    surge = Demand()
    for service in services:
        if service.shape not in shapes:
            continue  # an unknown shape has its own problem
        pod = pod_demand(shapes.get(service.shape))
        total = total + pod.times(service.replicas.max)
        surge = max(surge, pod, key=lambda d: (d.gpus, d.millicores, d.memory_mib))
    return total + surge


def quota_for(demand: Demand) -> TenantQuotaSpec:
    """The smallest quota that holds `demand`."""
    return TenantQuotaSpec(
        gpus=demand.gpus,
        cpu=max(demand.millicores, 1) / 1000,
        memory_gib=max(demand.memory_mib, 1) / 1024,
        pods=max(demand.pods, 1),
    )


def effective_tenants(
    declared: Sequence[TenantSpec], services: Sequence[ServiceSpec], shapes: ShapeCatalog
) -> list[TenantSpec]:
    """The declared tenants, or the implicit `default` tenant when none are declared."""
    if declared:
        return list(declared)
    demand = tenant_demand(services, shapes)
    return [TenantSpec(name=DEFAULT_TENANT, namespace=DEFAULT_NAMESPACE, quota=quota_for(demand))]


def _fits(quota: TenantQuotaSpec, demand: Demand) -> list[str]:
    """The quota's parts that `demand` exceeds, each with both numbers."""
    short = []
    if demand.gpus > quota.gpus:
        short.append(f"gpus: needs {demand.gpus}, quota {quota.gpus}")
    if demand.millicores > quota.cpu_millicores:
        short.append(f"cpu: needs {demand.millicores / 1000:g} cores, quota {quota.cpu:g}")
    if demand.memory_mib > quota.memory_mib:
        short.append(
            f"memory_gib: needs {math.ceil(demand.memory_mib / 1024 * 100) / 100:g}, "
            f"quota {quota.memory_gib:g}"
        )
    if demand.pods > quota.pods:
        short.append(f"pods: needs {demand.pods}, quota {quota.pods}")
    return short


def check_tenants(
    tenants: Sequence[TenantSpec], services: Sequence[ServiceSpec], shapes: ShapeCatalog
) -> list[SpecProblem]:
    """Tenants have distinct names and namespaces of their own, every service names a declared
    tenant, and each tenant's quota holds its services at full scale."""
    problems: list[SpecProblem] = []
    names: set[str] = set()
    namespaces: dict[str, str] = {}
    for i, tenant in enumerate(tenants):
        if tenant.name in names:
            problems.append(
                SpecProblem(
                    f"tenants[{i}].name",
                    "names in tenants must be unique",
                    repr(tenant.name),
                    "Rename one of them",
                )
            )
        names.add(tenant.name)
        namespace = tenant.namespace_name
        where = f"tenants[{i}].namespace" if tenant.namespace is not None else f"tenants[{i}].name"
        if namespace in RESERVED_NAMESPACES:
            problems.append(
                SpecProblem(
                    where,
                    "this namespace belongs to Kubernetes or to fermion's add-ons",
                    repr(namespace),
                    f"Give the tenant a namespace of its own, e.g. namespace: {tenant.name}-models",
                )
            )
        elif namespace in namespaces:
            problems.append(
                SpecProblem(
                    where,
                    f"tenant {namespaces[namespace]!r} already uses this namespace, and tenants "
                    "never share one",
                    repr(namespace),
                    "Give each tenant its own namespace",
                )
            )
        namespaces.setdefault(namespace, tenant.name)

    if tenants:
        declared = ", ".join(sorted(names))
        for i, service in enumerate(services):
            if service.tenant not in names:
                problems.append(
                    SpecProblem(
                        f"services[{i}].tenant",
                        "no tenant of this name is declared",
                        repr(service.tenant),
                        f"Use one of the tenants ({declared}), or declare it under tenants",
                    )
                )
    elif any(service.tenant != DEFAULT_TENANT for service in services):
        for i, service in enumerate(services):
            if service.tenant != DEFAULT_TENANT:
                problems.append(
                    SpecProblem(
                        f"services[{i}].tenant",
                        "no tenants are declared, so every service is in the default tenant",
                        repr(service.tenant),
                        "Declare the tenant under tenants (with its namespace and quota), or "
                        "leave tenant out",
                    )
                )

    for i, tenant in enumerate(tenants):
        own = [s for s in services if s.tenant == tenant.name]
        short = _fits(tenant.quota, tenant_demand(own, shapes))
        if short:
            problems.append(
                SpecProblem(
                    f"tenants[{i}].quota",
                    f"the services of tenant {tenant.name!r}, at their replicas.max plus one "
                    f"rollout surge pod, need more than its quota ({'; '.join(short)})",
                    None,
                    "Raise the quota, or lower those services' replicas.max",
                )
            )
    return problems
