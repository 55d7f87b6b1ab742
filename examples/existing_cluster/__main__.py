"""A Pulumi program of your own that adds to an EKS cluster another stack owns: one GPU pool,
fermion's cluster add-ons, one tenant (its namespace, quota and network policies) and one
inference service in it, scaled by KEDA, that needs one of its two bearer tokens.

Stack config (Pulumi.<stack>.yaml):
    aws:region: us-west-2
    existing-cluster:cluster: team-cluster              # the EKS cluster's name
    existing-cluster:subnets:                           # private subnets and their zones
      - {id: subnet-0a1b2c3d4e5f60718, zone: us-west-2a}
      - {id: subnet-0a1b2c3d4e5f60719, zone: us-west-2b}
    existing-cluster:image: <account>.dkr.ecr.us-west-2.amazonaws.com/runtime@sha256:...
    existing-cluster:model: s3://my-models/embed/1/
"""

from __future__ import annotations

import pulumi

from fermion.components import (
    ClusterAddons,
    ClusterAddonsArgs,
    ExistingCluster,
    GpuNodePool,
    GpuNodePoolArgs,
    InferenceService,
    InferenceServiceArgs,
    Tenant,
    TenantArgs,
    TenantQuota,
)
from fermion.components.model_store import s3_uri_read_policy
from fermion.environments import load_shapes

config = pulumi.Config()
region = pulumi.Config("aws").require("region")
subnets = config.require_object("subnets")
model = config.require("model")
shape = load_shapes().get("gpu.l4")

cluster = ExistingCluster(
    "team",
    config.require("cluster"),
    region=region,
    subnet_ids=[s["id"] for s in subnets],
    subnet_zones=[s["zone"] for s in subnets],
)
pool = GpuNodePool("l4", GpuNodePoolArgs(cluster=cluster.core, shape=shape, min_size=0, max_size=2))
addons = ClusterAddons("addons", ClusterAddonsArgs(cluster=cluster.core, kubernetes_version="1.34"))
tenant = Tenant(
    "ml",
    TenantArgs(
        name="ml",
        namespace="inference",
        # Two L4 replicas, plus one more while a rollout replaces them.
        quota=TenantQuota(gpus=3, cpu_millicores=24_000, memory_mib=96 * 1024, pods=3),
        cluster=cluster.core,
    ),
)
service = InferenceService(
    "embed",
    InferenceServiceArgs(
        name="embed",
        image=config.require("image"),
        shape=shape,
        cluster=cluster.core,
        model_uri=model,
        model_policy=s3_uri_read_policy(model),
        min_replicas=0,
        max_replicas=2,
        namespace=tenant.namespace,
        interceptor_service=addons.interceptor_service,
    ),
    opts=pulumi.ResourceOptions(depends_on=[tenant, addons, pool]),
)
pulumi.export("endpoint", service.endpoint)
pulumi.export("tokens", service.tokens)
