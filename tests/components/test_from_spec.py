"""from_spec: each section of an environment's spec becomes the Args of its component."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fermion.components.cluster import ClusterArgs
from fermion.components.from_spec import (
    ENVIRONMENT_TAG,
    cluster_addons_args,
    cluster_args,
    image_registry_args,
    inference_service_args,
    model_store_args,
    network_args,
    node_pool_args,
    runtime_image_args,
)
from fermion.components.image_registry import ImageRegistryArgs
from fermion.components.model_store import ModelStoreArgs
from fermion.components.network import NetworkArgs
from fermion.environments import load_shapes
from fermion.environments.spec import EnvironmentSpec

from .conftest import Recorder, core

DEV_TAGS = {ENVIRONMENT_TAG: "dev", "team": "ml"}


def _spec(**sections: Any) -> EnvironmentSpec:
    return EnvironmentSpec.model_validate({"name": "dev", "tags": {"team": "ml"}, **sections})


def test_the_network_section() -> None:
    spec = _spec(
        region="us-east-1",
        network={
            "cidr": "10.20.0.0/16",
            "availability_zones": 2,
            "subnet_prefix_length": 19,
            "nat": "single",
            "interface_endpoints": ["ecr.api", "ecr.dkr"],
            "flow_logs": False,
        },
    )
    assert network_args(spec) == NetworkArgs(
        cluster_name="fermion-dev",
        cidr="10.20.0.0/16",
        availability_zones=2,
        subnet_prefix_length=19,
        nat="single",
        interface_endpoints=("ecr.api", "ecr.dkr"),
        flow_logs=False,
        region="us-east-1",
        tags=DEV_TAGS,
    )


def test_the_spec_and_the_args_default_alike() -> None:
    spec = EnvironmentSpec(name="dev")
    tags = {ENVIRONMENT_TAG: "dev"}
    assert network_args(spec) == NetworkArgs(
        cluster_name="fermion-dev", region="us-west-2", tags=tags
    )
    assert model_store_args(spec) == ModelStoreArgs(tags=tags)
    assert image_registry_args(spec) == ImageRegistryArgs(repository="fermion/runtime", tags=tags)


def test_an_existing_vpc() -> None:
    spec = _spec(
        network={
            "vpc_id": "vpc-0abc1234",
            "private_subnet_ids": ["subnet-0aaa1111", "subnet-0bbb2222"],
            "public_subnet_ids": ["subnet-0ccc3333"],
        }
    )
    args = network_args(spec)
    assert args.vpc_id == "vpc-0abc1234"
    assert args.private_subnet_ids == ("subnet-0aaa1111", "subnet-0bbb2222")
    assert args.public_subnet_ids == ("subnet-0ccc3333",)


def test_the_cluster_section() -> None:
    spec = _spec(
        cluster={
            "name": "acme",
            "version": "1.33",
            "endpoint_public": True,
            "public_access_cidrs": ["203.0.113.0/24"],
            "admin_arns": ["arn:aws:iam::123456789012:role/admins"],
            "irsa": True,
            "system_nodes": {"shape": "cpu.large", "size": {"min": 3, "max": 5}},
        }
    )
    assert cluster_args(spec, ["subnet-a"], ["us-west-2a"]) == ClusterArgs(
        name="acme",
        version="1.33",
        subnet_ids=["subnet-a"],
        subnet_zones=["us-west-2a"],
        system_shape=load_shapes().get("cpu.large"),
        system_min=3,
        system_max=5,
        system_desired=None,
        endpoint_public=True,
        public_access_cidrs=("203.0.113.0/24",),
        admin_arns=("arn:aws:iam::123456789012:role/admins",),
        irsa=True,
        region="us-west-2",
        tags=DEV_TAGS,
    )


def test_a_node_pool_is_labelled_with_its_name(mocks: Recorder) -> None:
    spec = _spec(
        node_pools=[
            {
                "name": "l4",
                "shape": "gpu.l4",
                "capacity": "spot",
                "size": {"min": 0, "max": 4},
                "ami": "bottlerocket",
                "disk_gib": 300,
                "labels": {"team": "search"},
            }
        ]
    )
    cluster = core()
    args = node_pool_args(spec, spec.node_pools[0], cluster)
    assert args.cluster is cluster
    assert args.shape == load_shapes().get("gpu.l4")
    assert (args.capacity, args.min_size, args.max_size, args.desired_size) == ("spot", 0, 4, None)
    assert (args.ami, args.disk_gib) == ("bottlerocket", 300)
    assert args.labels == {"fermion.dev/pool": "l4", "team": "search"}
    assert args.tags == DEV_TAGS


def test_the_add_ons_install_gpu_software_only_for_gpu_pools(mocks: Recorder) -> None:
    cluster = core()
    cpu = _spec(node_pools=[{"name": "cpu", "shape": "cpu.large"}])
    assert cluster_addons_args(cpu, cluster, "vpc-1").gpu is False
    gpu = _spec(
        cluster={"load_balancer_controller": True},
        node_pools=[{"name": "cpu", "shape": "cpu.large"}, {"name": "l4", "shape": "gpu.l4"}],
    )
    args = cluster_addons_args(gpu, cluster, "vpc-1")
    assert args.gpu is True
    assert args.load_balancer_controller is True
    assert args.vpc_id == "vpc-1"
    assert args.kubernetes_version == gpu.cluster.version
    assert args.cluster is cluster


def test_the_storage_and_registry_sections() -> None:
    spec = _spec(
        storage={
            "bucket": "acme-models",
            "versioning": False,
            "noncurrent_version_days": 7,
            "access_logging": True,
            "force_destroy": True,
        },
        registry={
            "repository": "acme/serving",
            "scan_on_push": False,
            "immutable_tags": False,
            "keep_images": 12,
        },
    )
    assert model_store_args(spec) == ModelStoreArgs(
        bucket_name="acme-models",
        versioning=False,
        noncurrent_version_days=7,
        access_logging=True,
        force_destroy=True,
        tags=DEV_TAGS,
    )
    assert image_registry_args(spec) == ImageRegistryArgs(
        repository="acme/serving",
        scan_on_push=False,
        immutable_tags=False,
        keep_images=12,
        tags=DEV_TAGS,
    )


def test_a_service_and_its_runtime_image(mocks: Recorder, tmp_path: Path) -> None:
    spec = _spec(
        node_pools=[{"name": "l4", "shape": "gpu.l4", "size": {"min": 0, "max": 3}}],
        services=[
            {
                "name": "embed",
                "shape": "gpu.l4",
                "replicas": {"min": 0, "max": 3},
                "autoscaling": {"metric": "rps", "target": 20, "scale_down_delay_s": 60},
                "timeout_s": 12,
                "env": {"LOG": "debug"},
                "pip_packages": ["tokenizers==0.20.0"],
            }
        ],
    )
    (service,) = spec.services
    image = runtime_image_args(spec, service, "repo-url", "123456789012", tmp_path)
    assert image.image == "torch-cuda12"
    assert image.model.name == "embed"
    assert (image.repository_url, image.registry_id) == ("repo-url", "123456789012")
    assert image.context_dir == tmp_path
    assert image.pip_packages == ("tokenizers==0.20.0",)
    cluster = core()
    args = inference_service_args(
        spec, service, cluster, "image@sha256:1", "s3://m/embed/1/", "{}", "keda:80"
    )
    assert args.cluster is cluster
    assert (args.name, args.image, args.shape) == (
        "embed",
        "image@sha256:1",
        load_shapes().get("gpu.l4"),
    )
    assert (args.model_uri, args.model_policy, args.namespace) == (
        "s3://m/embed/1/",
        "{}",
        "inference",
    )
    assert (args.min_replicas, args.max_replicas) == (0, 3)
    assert (args.metric, args.target, args.scale_down_delay_s) == ("rps", 20, 60)
    assert args.timeout_s == 12
    assert args.env == {"LOG": "debug"}
    assert args.port == 8080
    assert args.interceptor_service == "keda:80"
    assert args.tags == DEV_TAGS
    # Tokens are on unless the spec turns them off; a private service has no public parts.
    assert (args.auth, args.token_generations) == (True, (1, 1))
    assert (args.public, args.hostname, args.certificate_arn, args.allowed_cidrs) == (
        False,
        None,
        None,
        (),
    )
