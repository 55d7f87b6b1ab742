"""Platform: a whole fermion environment, composed from an EnvironmentSpec.

`Network` feeds `Cluster`; the cluster feeds one `GpuNodePool` per pool, `ClusterAddons` and
one `Tenant` per tenant; `ModelStore` and `ImageRegistry` stand beside them, and each service
gets its `RuntimeImage` and its `InferenceService`, in its tenant's namespace. Each
component's Args come from the spec through `fermion.components.from_spec`.
The stack program (`fermion.stacks.program`) builds one of these and exports its outputs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from fermion.components.cluster import Cluster
from fermion.components.cluster_addons import ClusterAddons
from fermion.components.from_spec import (
    cluster_addons_args,
    cluster_args,
    image_registry_args,
    inference_service_args,
    model_cache_args,
    model_cache_service,
    model_store_args,
    network_args,
    node_pool_args,
    runtime_image_args,
    tenant_args,
)
from fermion.components.gpu_node_pool import GpuNodePool
from fermion.components.image_registry import ImageRegistry
from fermion.components.inference_service import InferenceService
from fermion.components.model_cache import ModelCache
from fermion.components.model_store import ModelStore, s3_uri_read_policy
from fermion.components.network import Network
from fermion.components.runtime_image import DEFAULT_CONTEXT_DIR, RuntimeImage
from fermion.components.tenant import Tenant
from fermion.environments.sections import ServiceSpec
from fermion.environments.spec import EnvironmentSpec


@dataclass(frozen=True)
class PlatformArgs:
    """An environment and where its services' build contexts are rendered.

    Shapes come from the catalog the spec was checked against (`spec.shapes`).
    `context_dir` must be a folder this program may rewrite: each service's image context is
    rendered under it, and its content hash becomes the image tag.
    """

    spec: EnvironmentSpec
    context_dir: Path = DEFAULT_CONTEXT_DIR


class Platform(pulumi.ComponentResource):
    """Everything `fermion up ENV` creates, as one component.

    Outputs: `cluster_name`, `kubeconfig` (secret), `bucket`, `registry_url`, `vpc_id`,
    `images` (service name to the image reference its pods run), `endpoints` (service name
    to its in-cluster URL, and for public services its HTTPS URL and the load balancer its
    hostname's DNS record points to), `models` (service name to the `s3://` folder its server
    loads the model from: where to upload it), `tokens` (secret: service name to its two valid
    bearer tokens), `namespaces` (tenant name to namespace) and, with IRSA, `irsa` (the OIDC
    provider's ARN and issuer). The parts are attributes too (`network`, `cluster`,
    `node_pools`, `addons`, `tenants`, `store`, `registry`, `runtime_images`, `services`, and
    `model_cache`, None unless the environment turns it on), for stacks that build on one
    environment.
    """

    network: Network
    cluster: Cluster
    node_pools: dict[str, GpuNodePool]
    addons: ClusterAddons
    tenants: dict[str, Tenant]
    store: ModelStore
    registry: ImageRegistry
    runtime_images: dict[str, RuntimeImage]
    services: dict[str, InferenceService]
    model_cache: ModelCache | None
    outputs: dict[str, Any]

    def __init__(
        self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fermion:index:Platform", name, None, opts)
        spec = args.spec
        child = pulumi.ResourceOptions(parent=self)

        self.network = Network(f"{name}-network", network_args(spec), opts=child)
        self.cluster = Cluster(
            f"{name}-cluster",
            cluster_args(spec, self.network.private_subnet_ids, self.network.private_subnet_zones),
            opts=child,
        )
        core = self.cluster.core
        # Pools join a cluster whose networking add-ons are in place, or their nodes never
        # turn Ready.
        after_cluster = pulumi.ResourceOptions(
            parent=self, depends_on=[self.cluster.cluster, *self.cluster.addons.values()]
        )
        self.node_pools = {
            pool.name: GpuNodePool(
                f"{name}-{pool.name}",
                node_pool_args(spec, pool, core),
                opts=after_cluster,
            )
            for pool in spec.node_pools
        }
        self.addons = ClusterAddons(
            f"{name}-addons",
            cluster_addons_args(spec, core, self.network.vpc_id),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.cluster.system_nodes, *self.cluster.addons.values()]
            ),
        )
        self.store = ModelStore(f"{name}-models", model_store_args(spec), opts=child)
        self.registry = ImageRegistry(f"{name}-registry", image_registry_args(spec), opts=child)
        self.runtime_images = {}
        self.services = {}
        self.model_uris: dict[str, pulumi.Input[str]] = {}
        self.tenants = {}
        for tenant in spec.tenants_in_effect:
            tenant_config = tenant_args(spec, tenant, core)
            if not spec.tenants:
                # Before tenants, the platform declared the services' namespace itself.
                earlier = pulumi.Alias(name=f"{name}-inference", parent=self)
                tenant_config = dataclasses.replace(tenant_config, namespace_aliases=(earlier,))
            self.tenants[tenant.name] = Tenant(
                f"{name}-tenant-{tenant.name}", tenant_config, opts=child
            )
        for service in spec.services:
            image = RuntimeImage(
                f"{name}-{service.name}",
                runtime_image_args(
                    spec,
                    service,
                    self.registry.repository_url,
                    self.registry.registry_id,
                    args.context_dir,
                ),
                opts=child,
            )
            self.runtime_images[service.name] = image
            self.services[service.name] = self._service(
                name, spec, service, image, self.tenants[service.tenant]
            )
        self.model_cache = None
        cache_service = model_cache_service(spec)
        if cache_service is not None:
            # Any runtime image holds the cache's server; model servers that start before it
            # load from S3, and fill it once it runs.
            self.model_cache = ModelCache(
                f"{name}-model-cache",
                model_cache_args(spec, core, self.runtime_images[cache_service.name].image_ref),
                opts=child,
            )

        self.outputs = {
            "cluster_name": self.cluster.cluster_name,
            "kubeconfig": self.cluster.kubeconfig,
            "vpc_id": self.network.vpc_id,
            "bucket": self.store.bucket_name,
            "registry_url": self.registry.repository_url,
            "images": {name: image.image_ref for name, image in self.runtime_images.items()},
            "endpoints": {name: _endpoints(service) for name, service in self.services.items()},
            "models": self.model_uris,
            "tokens": pulumi.Output.secret(
                {name: service.tokens for name, service in self.services.items()}
            ),
            "namespaces": {name: tenant.namespace for name, tenant in self.tenants.items()},
        }
        if self.cluster.oidc_provider_arn is not None:
            self.outputs["irsa"] = {
                "oidc_provider_arn": self.cluster.oidc_provider_arn,
                "oidc_issuer": self.cluster.oidc_issuer,
            }
        self.register_outputs(self.outputs)

    def _service(
        self,
        name: str,
        spec: EnvironmentSpec,
        service: ServiceSpec,
        image: RuntimeImage,
        tenant: Tenant,
    ) -> InferenceService:
        # A model kept outside the environment's store is read from there; the store holds
        # the others, one prefix per service and version.
        if service.model.uri is not None:
            model_uri: pulumi.Input[str] = service.model.uri
            policy: pulumi.Input[str] = s3_uri_read_policy(service.model.uri)
        else:
            model_uri = self.store.bucket_name.apply(
                lambda bucket: f"s3://{bucket}/{service.name}/{service.model.version}/"
            )
            policy = self.store.read_only_policy(service.name)
        self.model_uris[service.name] = model_uri
        return InferenceService(
            f"{name}-{service.name}",
            inference_service_args(
                spec,
                service,
                self.cluster.core,
                image.image_ref,
                model_uri,
                policy,
                self.addons.interceptor_service,
            ),
            # KEDA's CRDs, the tenant's namespace and the pools that run the replicas come first.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[tenant, self.addons, *self.node_pools.values()]
            ),
        )


def _endpoints(service: InferenceService) -> dict[str, Any]:
    urls: dict[str, Any] = {"url": service.endpoint}
    if service.public_endpoint is not None:
        urls["public_url"] = service.public_endpoint
        urls["load_balancer"] = service.load_balancer
    return urls
