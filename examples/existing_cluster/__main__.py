"""A Pulumi program of your own that adds to an EKS cluster another stack owns: one GPU pool,
fermion's cluster add-ons, and one inference service scaled by KEDA.

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
import pulumi_kubernetes as k8s

from fermion.components import (
    ClusterAddons,
    ClusterAddonsArgs,
    ExistingCluster,
    GpuNodePool,
    GpuNodePoolArgs,
    InferenceService,
    InferenceServiceArgs,
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
namespace = k8s.core.v1.Namespace(
    "inference",
    metadata=k8s.meta.v1.ObjectMetaArgs(name="inference"),
    opts=pulumi.ResourceOptions(provider=cluster.provider),
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
        interceptor_service=addons.interceptor_service,
    ),
    opts=pulumi.ResourceOptions(depends_on=[namespace, addons, pool]),
)
pulumi.export("endpoint", service.endpoint)
