"""Pulumi components for a fermion environment: network, cluster, GPU node pools, cluster add-ons,
model store, image registry, runtime images, inference services and the node's model cache, and
the Platform that composes them.

Importing this package loads pulumi_aws; the CLI imports it only inside the commands that use it.
"""

from __future__ import annotations

from fermion.components.cluster import Cluster, ClusterArgs
from fermion.components.cluster_addons import ClusterAddons, ClusterAddonsArgs
from fermion.components.cluster_core import ClusterCore
from fermion.components.existing_cluster import ExistingCluster
from fermion.components.gpu_node_pool import GpuNodePool, GpuNodePoolArgs
from fermion.components.image_registry import ImageRegistry, ImageRegistryArgs
from fermion.components.inference_service import InferenceService, InferenceServiceArgs
from fermion.components.model_cache import ModelCache, ModelCacheArgs
from fermion.components.model_store import ModelStore, ModelStoreArgs
from fermion.components.network import Network, NetworkArgs
from fermion.components.platform import Platform, PlatformArgs
from fermion.components.runtime_image import RuntimeImage, RuntimeImageArgs
from fermion.components.system_node_group import SystemNodeGroup, SystemNodeGroupArgs
from fermion.components.tenant import Tenant, TenantArgs, TenantQuota

__all__ = [
    "Cluster",
    "ClusterAddons",
    "ClusterAddonsArgs",
    "ClusterArgs",
    "ClusterCore",
    "ExistingCluster",
    "GpuNodePool",
    "GpuNodePoolArgs",
    "ImageRegistry",
    "ImageRegistryArgs",
    "InferenceService",
    "InferenceServiceArgs",
    "ModelCache",
    "ModelCacheArgs",
    "ModelStore",
    "ModelStoreArgs",
    "Network",
    "NetworkArgs",
    "Platform",
    "PlatformArgs",
    "RuntimeImage",
    "RuntimeImageArgs",
    "SystemNodeGroup",
    "SystemNodeGroupArgs",
    "Tenant",
    "TenantArgs",
    "TenantQuota",
]
