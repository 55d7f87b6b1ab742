"""EnvironmentSpec: one fermion environment, as written under `fermion:environment`.

Its sections are the models of `fermion.environments.sections`. The rules that span sections
live in `fermion.environments.rules` and run whenever an EnvironmentSpec is built.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, PrivateAttr, ValidationInfo, model_validator

from fermion.environments import formats
from fermion.environments.errors import EnvironmentSpecError
from fermion.environments.rules import check_environment
from fermion.environments.sections import (
    ClusterSpec,
    ModelCacheSpec,
    Name,
    NetworkSpec,
    NodePoolSpec,
    PolicyWaiverSpec,
    RegistrySpec,
    ServiceSpec,
    Spec,
    StorageSpec,
    TagValue,
    TenantSpec,
)
from fermion.environments.shapes import ShapeCatalog, image_for, load_shapes
from fermion.environments.tenancy import effective_tenants

__all__ = ["EnvironmentSpec"]


class EnvironmentSpec(Spec):
    """One fermion environment: everything `fermion up ENV` creates.

    Construct it with `parse_environment` (from data) or directly; either way the cross-field
    rules run and a bad spec raises `EnvironmentSpecError`.
    """

    name: Name
    region: Annotated[str, AfterValidator(formats.legal_region)] = "us-west-2"
    network: NetworkSpec = NetworkSpec()
    cluster: ClusterSpec = ClusterSpec()
    node_pools: list[NodePoolSpec] = []  # noqa: RUF012
    storage: StorageSpec = StorageSpec()
    registry: RegistrySpec = RegistrySpec()
    model_cache: ModelCacheSpec = ModelCacheSpec()
    services: list[ServiceSpec] = []  # noqa: RUF012
    tenants: list[TenantSpec] = []  # noqa: RUF012
    tags: Annotated[dict[str, TagValue], Field(max_length=40)] = {}  # noqa: RUF012
    policy_waivers: list[PolicyWaiverSpec] = []  # noqa: RUF012
    _shapes: ShapeCatalog = PrivateAttr()

    @model_validator(mode="after")
    def _cross_field_rules(self, info: ValidationInfo) -> EnvironmentSpec:
        context: dict[str, Any] = info.context if isinstance(info.context, dict) else {}
        given = context.get("shapes")
        # The one place that falls back to the catalog shipped with fermion.
        shapes = load_shapes() if given is None else given
        problems = check_environment(self, shapes)
        if problems:
            raise EnvironmentSpecError(str(context.get("source", "EnvironmentSpec")), problems)
        self._shapes = shapes
        return self

    @property
    def shapes(self) -> ShapeCatalog:
        """The shape catalog this environment was checked against."""
        return self._shapes

    @property
    def cluster_name(self) -> str:
        return self.cluster.name if self.cluster.name is not None else f"fermion-{self.name}"

    @property
    def tenants_in_effect(self) -> list[TenantSpec]:
        """The declared tenants, or the implicit `default` one sized to the services."""
        return effective_tenants(self.tenants, self.services, self.shapes)

    def namespace_of(self, service: ServiceSpec) -> str:
        """The namespace of the tenant a service belongs to."""
        by_name = {tenant.name: tenant for tenant in self.tenants_in_effect}
        return by_name[service.tenant].namespace_name

    def image_for(self, service: ServiceSpec) -> str:
        """The runtime image a service runs: its own choice, else CUDA exactly on GPU shapes."""
        return image_for(service.image, self.shapes.get(service.shape))
