"""Platform: a whole fermion environment, composed from an EnvironmentSpec.

`Network` feeds `Cluster`; the cluster feeds one `GpuNodePool` per pool and `ClusterAddons`;
`ModelStore` and `ImageRegistry` stand beside them, and each service gets its `RuntimeImage`
and its `InferenceService`.
The stack program (`fermion.stacks.program`) builds one of these and exports its outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from fermion.components.cluster import Cluster, ClusterArgs
from fermion.components.cluster_addons import ClusterAddons, ClusterAddonsArgs
from fermion.components.gpu_node_pool import GpuNodePool, GpuNodePoolArgs
from fermion.components.image_registry import ImageRegistry, ImageRegistryArgs
from fermion.components.inference_service import (
    InferenceService,
    InferenceServiceArgs,
    s3_read_policy,
)
from fermion.components.model_store import ModelStore, ModelStoreArgs
from fermion.components.network import Network, NetworkArgs
from fermion.components.runtime_image import DEFAULT_CONTEXT_DIR, RuntimeImage, RuntimeImageArgs
from fermion.environments.shapes import ShapeCatalog
from fermion.environments.spec import EnvironmentSpec, ServiceSpec
from fermion.runtime_images.catalog import load_image
from fermion.runtime_images.render import model_config

ENVIRONMENT_TAG = "fermion.dev/environment"
SERVICES_NAMESPACE = "inference"


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
    to its in-cluster URL, and its public URL when it has one) and `models` (service name to
    the `s3://` folder its server loads the model from: where to upload it). The parts are
    attributes too (`network`, `cluster`, `node_pools`, `addons`, `store`, `registry`,
    `runtime_images`, `services`), for stacks that build on one environment.
    """

    network: Network
    cluster: Cluster
    node_pools: dict[str, GpuNodePool]
    addons: ClusterAddons
    store: ModelStore
    registry: ImageRegistry
    runtime_images: dict[str, RuntimeImage]
    services: dict[str, InferenceService]
    outputs: dict[str, Any]

    def __init__(
        self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fermion:index:Platform", name, None, opts)
        spec = args.spec
        shapes = spec.shapes
        tags = {ENVIRONMENT_TAG: spec.name, **spec.tags}
        child = pulumi.ResourceOptions(parent=self)

        self.network = Network(
            f"{name}-network",
            NetworkArgs.from_spec(spec.network, spec.cluster_name, tags, region=spec.region),
            opts=child,
        )
        subnets = self.network.private_subnet_ids
        zones = self.network.private_subnet_zones
        system = spec.cluster.system_nodes
        self.cluster = Cluster(
            f"{name}-cluster",
            ClusterArgs(
                name=spec.cluster_name,
                version=spec.cluster.version,
                subnet_ids=subnets,
                subnet_zones=zones,
                system_shape=shapes.get(system.shape),
                system_min=system.size.min,
                system_max=system.size.max,
                system_desired=system.size.desired,
                endpoint_public=spec.cluster.endpoint_public,
                public_access_cidrs=tuple(str(c) for c in spec.cluster.public_access_cidrs),
                service_cidr=str(spec.cluster.service_cidr),
                log_types=tuple(spec.cluster.log_types),
                admin_arns=tuple(spec.cluster.admin_arns),
                irsa=spec.cluster.irsa,
                region=spec.region,
                tags=tags,
            ),
            opts=child,
        )
        # Pools join a cluster whose networking add-ons are in place, or their nodes never
        # turn Ready.
        after_cluster = pulumi.ResourceOptions(
            parent=self, depends_on=[self.cluster.cluster, *self.cluster.addons.values()]
        )
        self.node_pools = {
            pool.name: GpuNodePool(
                f"{name}-{pool.name}",
                GpuNodePoolArgs(
                    cluster=self.cluster.core,
                    shape=shapes.get(pool.shape),
                    capacity=pool.capacity,
                    min_size=pool.size.min,
                    max_size=pool.size.max,
                    desired_size=pool.size.desired,
                    ami=pool.ami,
                    disk_gib=pool.disk_gib,
                    labels={"fermion.dev/pool": pool.name, **pool.labels},
                    tags=tags,
                ),
                opts=after_cluster,
            )
            for pool in spec.node_pools
        }
        self.addons = ClusterAddons(
            f"{name}-addons",
            ClusterAddonsArgs(
                cluster=self.cluster.core,
                kubernetes_version=spec.cluster.version,
                vpc_id=self.network.vpc_id,
                gpu=any(shapes.get(pool.shape).is_gpu for pool in spec.node_pools),
                load_balancer_controller=spec.cluster.load_balancer_controller,
                tags=tags,
            ),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.cluster.system_nodes, *self.cluster.addons.values()]
            ),
        )
        self.store = ModelStore(
            f"{name}-models", ModelStoreArgs.from_spec(spec.storage, tags), opts=child
        )
        self.registry = ImageRegistry(
            f"{name}-registry", ImageRegistryArgs.from_spec(spec.registry, tags), opts=child
        )
        self.runtime_images = {}
        self.services = {}
        self.model_uris: dict[str, pulumi.Input[str]] = {}
        namespace = k8s.core.v1.Namespace(
            f"{name}-inference",
            metadata={"name": SERVICES_NAMESPACE, "labels": {ENVIRONMENT_TAG: spec.name}},
            opts=pulumi.ResourceOptions(parent=self, provider=self.cluster.provider),
        )
        for service in spec.services:
            image_name = spec.image_for(service)
            image = RuntimeImage(
                f"{name}-{service.name}",
                RuntimeImageArgs(
                    image=image_name,
                    model=model_config(service),
                    repository_url=self.registry.repository_url,
                    registry_id=self.registry.registry_id,
                    context_dir=args.context_dir,
                    pip_packages=tuple(service.pip_packages),
                ),
                opts=child,
            )
            self.runtime_images[service.name] = image
            self.services[service.name] = self._service(
                name, service, image, shapes, load_image(image_name).port, tags, namespace
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
        }
        self.register_outputs(self.outputs)

    def _service(
        self,
        name: str,
        service: ServiceSpec,
        image: RuntimeImage,
        shapes: ShapeCatalog,
        port: int,
        tags: dict[str, str],
        namespace: k8s.core.v1.Namespace,
    ) -> InferenceService:
        if service.model.uri is not None:
            model_uri: pulumi.Input[str] = service.model.uri
            policy: pulumi.Input[str] = s3_read_policy(service.model.uri)
        else:
            model_uri = self.store.bucket_name.apply(
                lambda bucket: f"s3://{bucket}/{service.name}/{service.model.version}/"
            )
            policy = self.store.read_only_policy(service.name)
        self.model_uris[service.name] = model_uri
        return InferenceService(
            f"{name}-{service.name}",
            InferenceServiceArgs(
                name=service.name,
                image=image.image_ref,
                shape=shapes.get(service.shape),
                cluster=self.cluster.core,
                model_uri=model_uri,
                model_policy=policy,
                namespace=SERVICES_NAMESPACE,
                port=port,
                min_replicas=service.replicas.min,
                max_replicas=service.replicas.max,
                # The spec's rules refuse queue_depth before it gets here.
                metric="rps" if service.autoscaling.metric == "rps" else "in_flight",
                target=service.autoscaling.target,
                scale_down_delay_s=service.autoscaling.scale_down_delay_s,
                timeout_s=service.timeout_s,
                env=service.env,
                public=service.public,
                interceptor_service=self.addons.interceptor_service,
                tags=tags,
            ),
            # KEDA's CRDs and the pools that run the replicas come first.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[namespace, self.addons, *self.node_pools.values()]
            ),
        )


def _endpoints(service: InferenceService) -> dict[str, Any]:
    urls: dict[str, Any] = {"url": service.endpoint}
    if service.public_endpoint is not None:
        urls["public_url"] = service.public_endpoint
    return urls
