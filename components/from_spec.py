"""The one place an environment's spec becomes components' Args.

Each component's Args know nothing of the `fermion:environment` format; these functions read
the spec's sections and fill them in, with what only the deployment knows (another component's
outputs) passed beside it. `Platform` composes with them.
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from fermion.components.cluster import ClusterArgs
from fermion.components.cluster_addons import ClusterAddonsArgs
from fermion.components.cluster_core import ClusterCore
from fermion.components.gpu_node_pool import GpuNodePoolArgs
from fermion.components.image_registry import ImageRegistryArgs
from fermion.components.inference_service import InferenceServiceArgs
from fermion.components.model_cache import (
    ModelCacheArgs,
    model_cache_egress_policy_spec,
    model_cache_url,
)
from fermion.components.model_store import ModelStoreArgs
from fermion.components.network import NetworkArgs
from fermion.components.runtime_image import RuntimeImageArgs
from fermion.components.tenant import TenantArgs, TenantQuota
from fermion.environments.sections import NodePoolSpec, ServiceSpec, TenantSpec
from fermion.environments.spec import EnvironmentSpec
from fermion.runtime_images.catalog import load_image
from fermion.runtime_images.render import model_config

# Every AWS resource of an environment carries its name under this tag.
ENVIRONMENT_TAG = "fermion.dev/environment"


def environment_tags(spec: EnvironmentSpec) -> dict[str, str]:
    """The tags on every resource of the environment: its name, then the spec's own tags."""
    return {ENVIRONMENT_TAG: spec.name, **spec.tags}


def network_args(spec: EnvironmentSpec) -> NetworkArgs:
    """The network the `network` section asks for."""
    network = spec.network
    return NetworkArgs(
        cluster_name=spec.cluster_name,
        cidr=str(network.cidr),
        availability_zones=network.availability_zones,
        subnet_prefix_length=network.subnet_prefix_length,
        nat=network.nat,
        interface_endpoints=tuple(network.interface_endpoints),
        flow_logs=network.flow_logs,
        region=spec.region,
        vpc_id=network.vpc_id,
        private_subnet_ids=tuple(network.private_subnet_ids),
        public_subnet_ids=tuple(network.public_subnet_ids),
        tags=environment_tags(spec),
    )


def cluster_args(
    spec: EnvironmentSpec,
    subnet_ids: pulumi.Input[list[str]],
    subnet_zones: pulumi.Input[list[str]],
) -> ClusterArgs:
    """The control plane and system nodes the `cluster` section asks for, in the network's
    private subnets."""
    cluster = spec.cluster
    system = cluster.system_nodes
    return ClusterArgs(
        name=spec.cluster_name,
        version=cluster.version,
        subnet_ids=subnet_ids,
        subnet_zones=subnet_zones,
        system_shape=spec.shapes.get(system.shape),
        system_min=system.size.min,
        system_max=system.size.max,
        system_desired=system.size.desired,
        endpoint_public=cluster.endpoint_public,
        public_access_cidrs=tuple(str(c) for c in cluster.public_access_cidrs),
        service_cidr=str(cluster.service_cidr),
        log_types=tuple(cluster.log_types),
        admin_arns=tuple(cluster.admin_arns),
        irsa=cluster.irsa,
        region=spec.region,
        tags=environment_tags(spec),
    )


def node_pool_args(
    spec: EnvironmentSpec, pool: NodePoolSpec, cluster: ClusterCore
) -> GpuNodePoolArgs:
    """One of the `node_pools`, labelled with its name."""
    return GpuNodePoolArgs(
        cluster=cluster,
        shape=spec.shapes.get(pool.shape),
        capacity=pool.capacity,
        min_size=pool.size.min,
        max_size=pool.size.max,
        desired_size=pool.size.desired,
        ami=pool.ami,
        disk_gib=pool.disk_gib,
        labels={"fermion.dev/pool": pool.name, **pool.labels},
        tags=environment_tags(spec),
    )


def cluster_addons_args(
    spec: EnvironmentSpec, cluster: ClusterCore, vpc_id: pulumi.Input[str]
) -> ClusterAddonsArgs:
    """The add-ons the environment needs: NVIDIA software only when a pool has GPUs."""
    return ClusterAddonsArgs(
        cluster=cluster,
        kubernetes_version=spec.cluster.version,
        vpc_id=vpc_id,
        gpu=any(spec.shapes.get(pool.shape).is_gpu for pool in spec.node_pools),
        load_balancer_controller=spec.cluster.load_balancer_controller,
        tags=environment_tags(spec),
    )


def model_store_args(spec: EnvironmentSpec) -> ModelStoreArgs:
    """The model bucket the `storage` section asks for."""
    storage = spec.storage
    return ModelStoreArgs(
        bucket_name=storage.bucket,
        versioning=storage.versioning,
        noncurrent_version_days=storage.noncurrent_version_days,
        access_logging=storage.access_logging,
        force_destroy=storage.force_destroy,
        tags=environment_tags(spec),
    )


def image_registry_args(spec: EnvironmentSpec) -> ImageRegistryArgs:
    """The image repository the `registry` section asks for."""
    registry = spec.registry
    return ImageRegistryArgs(
        repository=registry.repository,
        scan_on_push=registry.scan_on_push,
        immutable_tags=registry.immutable_tags,
        keep_images=registry.keep_images,
        tags=environment_tags(spec),
    )


def tenant_args(spec: EnvironmentSpec, tenant: TenantSpec, cluster: ClusterCore) -> TenantArgs:
    """One of the tenants in effect (`spec.tenants_in_effect`): its namespace and quota."""
    quota = tenant.quota
    return TenantArgs(
        name=tenant.name,
        namespace=tenant.namespace_name,
        quota=TenantQuota(
            gpus=quota.gpus,
            cpu_millicores=quota.cpu_millicores,
            memory_mib=quota.memory_mib,
            pods=quota.pods,
        ),
        cluster=cluster,
        labels={ENVIRONMENT_TAG: spec.name},
        model_cache_egress=model_cache_egress_policy_spec() if spec.model_cache.enabled else None,
    )


def model_cache_service(spec: EnvironmentSpec) -> ServiceSpec | None:
    """The service whose runtime image the node's model cache runs: the first that runs a CPU
    image (the smallest), else the first service; None when the cache is off or there are no
    services."""
    if not spec.model_cache.enabled or not spec.services:
        return None
    for service in spec.services:
        if spec.image_for(service) == "torch-cpu":
            return service
    return spec.services[0]


def model_cache_args(
    spec: EnvironmentSpec, cluster: ClusterCore, image: pulumi.Input[str]
) -> ModelCacheArgs:
    """The node's model cache the `model_cache` section asks for, open to every tenant."""
    return ModelCacheArgs(
        image=image,
        cluster=cluster,
        tenant_namespaces=tuple(t.namespace_name for t in spec.tenants_in_effect),
        size_gib=spec.model_cache.size_gib,
        labels={ENVIRONMENT_TAG: spec.name},
    )


def runtime_image_args(
    spec: EnvironmentSpec,
    service: ServiceSpec,
    repository_url: pulumi.Input[str],
    registry_id: pulumi.Input[str] | None,
    context_dir: Path,
) -> RuntimeImageArgs:
    """The runtime image a service runs, built from its spec into `context_dir`."""
    return RuntimeImageArgs(
        image=spec.image_for(service),
        model=model_config(service),
        repository_url=repository_url,
        registry_id=registry_id,
        context_dir=context_dir,
        pip_packages=tuple(service.pip_packages),
    )


def inference_service_args(
    spec: EnvironmentSpec,
    service: ServiceSpec,
    cluster: ClusterCore,
    image: pulumi.Input[str],
    model_uri: pulumi.Input[str],
    model_policy: pulumi.Input[str],
    interceptor_service: str,
) -> InferenceServiceArgs:
    """One of the `services`, running `image` (built from its runtime image) and reading its
    model from `model_uri`."""
    return InferenceServiceArgs(
        name=service.name,
        image=image,
        shape=spec.shapes.get(service.shape),
        cluster=cluster,
        model_uri=model_uri,
        model_policy=model_policy,
        namespace=spec.namespace_of(service),
        port=load_image(spec.image_for(service)).port,
        min_replicas=service.replicas.min,
        max_replicas=service.replicas.max,
        # The spec's rules refuse queue_depth before it gets here.
        metric="rps" if service.autoscaling.metric == "rps" else "in_flight",
        target=service.autoscaling.target,
        scale_down_delay_s=service.autoscaling.scale_down_delay_s,
        timeout_s=service.timeout_s,
        env=service.env,
        auth=service.auth == "token",
        token_generations=(service.tokens.primary, service.tokens.secondary),
        public=service.public,
        hostname=service.hostname,
        certificate_arn=service.certificate_arn,
        allowed_cidrs=tuple(str(block) for block in service.allowed_cidrs),
        interceptor_service=interceptor_service,
        model_cache_url=model_cache_url() if spec.model_cache.enabled else None,
        tags=environment_tags(spec),
    )
