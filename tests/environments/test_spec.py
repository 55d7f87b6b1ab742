from __future__ import annotations

import math
import re
from typing import Any

import pytest

from fermion.environments import (
    EnvironmentSpec,
    EnvironmentSpecError,
    NodePoolSpec,
    ServiceSpec,
    SizeSpec,
    SpecProblem,
    parse_environment,
    parse_tensor_spec,
)
from fermion.runtime_images.server.config import TensorSpec

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def put(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set `value` at a key path such as `services[0].replicas.max`, creating mappings."""
    steps: list[str | int] = [int(i) if i else k for k, i in _STEP.findall(path)]
    node: Any = data
    for step in steps[:-1]:
        node = node[step] if isinstance(step, int) else node.setdefault(step, {})
    node[steps[-1]] = value
    return data


def problems_of(data: Any, env: str = "dev", region: Any = None) -> tuple[SpecProblem, ...]:
    with pytest.raises(EnvironmentSpecError) as info:
        parse_environment(data, env, region=region)
    return info.value.problems


def assert_problem(data: Any, path: str, fragment: str, **kwargs: Any) -> SpecProblem:
    problems = problems_of(data, **kwargs)
    for p in problems:
        if p.path == path and fragment.lower() in str(p).lower():
            return p
    rendered = "\n".join(str(p) for p in problems)
    raise AssertionError(f"no problem at {path} containing {fragment!r}; got:\n{rendered}")


# --- the shipped environments and the defaults ---------------------------------------------


def test_shipped_environments_validate(dev: dict[str, Any], prod: dict[str, Any]) -> None:
    d = parse_environment(dev, "dev", region="us-west-2")
    assert d.network.nat == "single"
    assert [p.size.min for p in d.node_pools] == [0]  # the GPU pool scales to zero
    assert len(d.services) == 1
    p = parse_environment(prod, "prod", region="us-east-1")
    assert p.network.nat == "per_az"
    assert {pool.capacity for pool in p.node_pools} == {"spot", "on_demand"}
    assert len(p.services) >= 3


@pytest.mark.parametrize("data", [{}, None])
def test_an_empty_environment_takes_production_defaults(data: Any) -> None:
    spec = parse_environment(data, "staging")
    assert spec.name == "staging"
    assert spec.cluster_name == "fermion-staging"
    assert str(spec.network.cidr) == "10.0.0.0/16"
    assert spec.network.availability_zones == 3
    assert spec.network.nat == "per_az"
    assert spec.network.flow_logs is True
    assert set(spec.network.interface_endpoints) == {"ecr.api", "ecr.dkr", "sts", "logs"}
    assert spec.cluster.endpoint_public is False
    assert set(spec.cluster.log_types) >= {"api", "audit", "authenticator"}
    assert spec.cluster.system_nodes.size.min == 2
    assert spec.storage.versioning is True
    assert spec.storage.force_destroy is False
    assert spec.registry.immutable_tags is True
    assert spec.registry.scan_on_push is True
    assert spec.node_pools == [] and spec.services == []


def test_service_defaults_and_image_choice(dev: dict[str, Any]) -> None:
    dev["node_pools"].append({"name": "cpu", "shape": "cpu.small", "size": {"max": 3}})
    dev["services"].append({"name": "tab", "shape": "cpu.small"})
    spec = parse_environment(dev, "dev")
    gpu_service, cpu_service = spec.services
    assert spec.image_for(gpu_service) == "torch-cuda12"
    assert spec.image_for(cpu_service) == "torch-cpu"
    assert cpu_service.replicas.min == 1 and cpu_service.replicas.max == 2
    assert cpu_service.batching.max_batch_size == 8
    assert cpu_service.model.format == "auto" and cpu_service.model.uri is None


def test_a_zero_stays_zero(dev: dict[str, Any]) -> None:
    put(dev, "services[0].batching.max_delay_ms", 0)
    put(dev, "services[0].autoscaling.scale_down_delay_s", 0)
    spec = parse_environment(dev, "dev")
    assert spec.services[0].batching.max_delay_ms == 0
    assert spec.services[0].autoscaling.scale_down_delay_s == 0


def test_every_problem_is_reported_at_once(prod: dict[str, Any]) -> None:
    put(prod, "services[1].replicas", {"min": 5, "max": 2})
    put(prod, "cluster.service_cidr", "10.50.0.0/20")
    paths = {p.path for p in problems_of(prod, env="prod")}
    assert {"services[1].replicas.max", "cluster.service_cidr"} <= paths


def test_the_message_names_file_path_value_and_fix(prod: dict[str, Any]) -> None:
    put(prod, "services[1].replicas", {"min": 5, "max": 2})
    with pytest.raises(EnvironmentSpecError) as info:
        parse_environment(prod, "prod", region="us-east-1", source="stacks/Pulumi.prod.yaml")
    message = str(info.value)
    assert message.startswith("stacks/Pulumi.prod.yaml: 1 problem")
    assert "services[1].replicas.max: max must be at least min (5) (got 2). Set max to 5" in message


def test_direct_construction_runs_the_cross_field_rules() -> None:
    with pytest.raises(EnvironmentSpecError, match="no node pool has this shape"):
        EnvironmentSpec(name="x", services=[ServiceSpec(name="a", shape="gpu.a10")])
    spec = EnvironmentSpec(
        name="x",
        node_pools=[NodePoolSpec(name="p", shape="gpu.a10", size=SizeSpec(min=0, max=2))],
        services=[ServiceSpec(name="a", shape="gpu.a10")],
    )
    assert spec.services[0].shape == "gpu.a10"


# --- bad values, one rule each -------------------------------------------------------------

BAD: list[tuple[str, Any, str, str]] = [
    # (where to put it, the bad value, the problem's path, a fragment of the message)
    ("network.cidr", "10.0.0.0/33", "network.cidr", "IPv4 network"),
    ("network.cidr", "8.8.0.0/16", "network.cidr", "private range"),
    ("network.cidr", True, "network.cidr", "as text"),
    ("network.cidr", 167772160, "network.cidr", "as text"),
    ("network.cidr", "10.0.0.0/8", "network.cidr", "between /16 and /24"),
    ("network.cidr", "10.40.0.0/24", "network.subnet_prefix_length", "do not fit"),
    ("network.availability_zones", 1, "network.availability_zones", "greater than or equal to 2"),
    ("network.subnet_prefix_length", 17, "network.subnet_prefix_length", "at least 18"),
    ("network.nat", "sometimes", "network.nat", "'per_az', 'single' or 'none'"),
    ("network.interface_endpoints", ["s3"], "network.interface_endpoints[0]", "ecr.api"),
    ("network.vpc_id", "vpc-xyz", "network.vpc_id", "not a VPC id"),
    ("network.private_subnet_ids", ["subnet-0123456789abcdef0"], "network.private_subnet_ids",
     "only apply to an existing VPC"),
    ("network.flow_logs", "perhaps", "network.flow_logs", "boolean"),
    ("cluster.service_cidr", "10.40.128.0/20", "cluster.service_cidr", "overlaps the VPC CIDR"),
    ("cluster.service_cidr", "8.8.0.0/16", "cluster.service_cidr", "private block"),
    ("cluster.public_access_cidrs", [], "cluster.public_access_cidrs", "needs the CIDRs"),
    ("cluster.public_access_cidrs", ["203.0.113.0/24", "203.0.113.128/25"],
     "cluster.public_access_cidrs[1]", "overlaps public_access_cidrs[0]"),
    ("cluster.public_access_cidrs", ["not-a-cidr"], "cluster.public_access_cidrs[0]", "IPv4"),
    ("cluster.version", "1.20", "cluster.version", "1.34"),
    ("cluster.name", "Bad_Name", "cluster.name", "not a DNS label"),
    ("cluster.name", "a" * 41, "cluster.name", "at most 40"),
    ("cluster.admin_arns", ["root"], "cluster.admin_arns[0]", "IAM role or user ARN"),
    ("cluster.admin_arns", ["arn:aws:iam::123456789012:role/a"] * 2, "cluster.admin_arns",
     "listed twice"),
    ("cluster.log_types", ["everything"], "cluster.log_types[0]", "api"),
    ("cluster.system_nodes.shape", "gpu.t4", "cluster.system_nodes.shape", "CPU shape"),
    ("cluster.system_nodes.shape", "cpu.huge", "cluster.system_nodes.shape", "unknown shape"),
    ("cluster.system_nodes.size", {"min": 0, "max": 2, "desired": 0},
     "cluster.system_nodes.size.min", "at least one node"),
    ("node_pools[0].shape", "gpu.l5", "node_pools[0].shape", "Did you mean 'gpu.l4'"),
    ("node_pools[0].size", {"min": 3, "max": 2}, "node_pools[0].size.max", "at least min (3)"),
    ("node_pools[0].size", {"min": 0, "max": 2, "desired": 5}, "node_pools[0].size.desired",
     "between min (0) and max (2)"),
    ("node_pools[0].size", {"min": -1}, "node_pools[0].size.min", "greater than or equal to 0"),
    ("node_pools[0].labels", {"kubernetes.io/role": "x"}, "node_pools[0].labels", "reserves"),
    ("node_pools[0].labels", {"fermion.dev/shape": "x"}, "node_pools[0].labels", "fermion sets"),
    ("node_pools[0].labels", {"team": "has space"}, "node_pools[0].labels", "label value"),
    ("node_pools[0].labels", {"-bad": "x"}, "node_pools[0].labels", "name part"),
    ("node_pools[0].disk_gib", 10, "node_pools[0].disk_gib", "greater than or equal to 20"),
    ("node_pools[0].ami", "ubuntu", "node_pools[0].ami", "'al2023' or 'bottlerocket'"),
    ("node_pools[0].capacity", "reserved", "node_pools[0].capacity", "'on_demand' or 'spot'"),
    ("node_pools[0].name", "GPU", "node_pools[0].name", "not a DNS label"),
    ("storage.bucket", "Bad_Bucket", "storage.bucket", "lowercase letters"),
    ("storage.bucket", "ab", "storage.bucket", "3 to 63"),
    ("storage.bucket", "my..bucket", "storage.bucket", "two dots"),
    ("storage.bucket", "192.168.1.1", "storage.bucket", "IP address"),
    ("storage.bucket", "xn--models", "storage.bucket", "must not begin"),
    ("storage.bucket", "models-s3alias", "storage.bucket", "must not end"),
    ("storage.noncurrent_version_days", 0, "storage.noncurrent_version_days", "greater than"),
    ("registry.repository", "Fermion/Runtime", "registry.repository", "ECR repository"),
    ("registry.keep_images", 0, "registry.keep_images", "greater than or equal to 1"),
    ("services[0].shape", "gpu.a10", "services[0].shape", "no node pool has this shape"),
    ("services[0].shape", "gpu.zz", "services[0].shape", "unknown shape"),
    ("services[0].replicas", {"min": 3, "max": 2}, "services[0].replicas.max", "at least min"),
    ("services[0].image", "torch-cpu", "services[0].image", "needs a CUDA image"),
    ("services[0].image", "torch-rocm", "services[0].image", "torch-cuda12"),
    ("services[0].model", {"format": "handler"}, "services[0].model.handler", "exactly when"),
    ("services[0].model.format", "torchscript", "services[0].model.handler", "exactly when"),
    ("services[0].model.handler", "nocolon", "services[0].model.handler", "MODULE:CLASS"),
    ("services[0].model.uri", "https://example.com/m.pt", "services[0].model.uri", "from S3"),
    ("services[0].model.uri", "s3://Bad_Bucket/m/", "services[0].model.uri", "bucket 'Bad_Bucket'"),
    ("services[0].model.version", "", "services[0].model.version", "not a model version"),
    ("services[0].inputs", ["input__0:FP33:-1,3"], "services[0].inputs[0]", "datatype 'FP33'"),
    ("services[0].inputs", ["input__0:FP32:a,3"], "services[0].inputs[0]", "not an integer"),
    ("services[0].inputs", ["input__0:FP32:0"], "services[0].inputs[0]", "must be positive"),
    ("services[0].inputs", ["input__0"], "services[0].inputs[0]", "NAME:DTYPE:SHAPE"),
    ("services[0].inputs", ["a:FP32:-1", "a:INT64:-1"], "services[0].inputs", "named twice"),
    ("services[0].env", {"1BAD": "x"}, "services[0].env", "environment variable"),
    ("services[0].batching.max_batch_size", 0, "services[0].batching.max_batch_size", "1"),
    ("services[0].batching.max_delay_ms", -1, "services[0].batching.max_delay_ms", "0"),
    ("services[0].batching.max_delay_ms", math.nan, "services[0].batching.max_delay_ms", "finite"),
    ("services[0].autoscaling.metric", "cpu", "services[0].autoscaling.metric", "in_flight"),
    ("services[0].autoscaling.target", 0, "services[0].autoscaling.target", "greater than 0"),
    ("services[0].timeout_s", 0, "services[0].timeout_s", "greater than 0"),
    ("services[0].precision", "fp8", "services[0].precision", "'fp32', 'fp16', 'bf16' or 'int8'"),
    ("services[0].replicas.max", 3, "node_pools[0].size.max", "can scale to 3 replicas"),
    ("services[0].replica", {"max": 1}, "services[0].replica", "Did you mean 'replicas'"),
    ("servics", [], "servics", "Did you mean 'services'"),
    ("network.nat_gateways", 1, "network.nat_gateways", "Allowed keys here: vpc_id"),
    ("tags", {"team": "x" * 300}, "tags.team", "at most 256"),
]  # fmt: skip


@pytest.mark.parametrize(("where", "value", "path", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_bad_value_is_named(
    dev: dict[str, Any], where: str, value: Any, path: str, fragment: str
) -> None:
    problem = assert_problem(put(dev, where, value), path, fragment)
    assert problem.line is None  # data, not a file: no line numbers


def test_duplicate_names(dev: dict[str, Any]) -> None:
    dev["node_pools"].append(dict(dev["node_pools"][0]))
    assert_problem(dev, "node_pools[1].name", "unique")
    dev["node_pools"].pop()
    dev["services"].append(dict(dev["services"][0]))
    assert_problem(dev, "services[1].name", "unique")


def test_cpu_shape_rejects_the_cuda_image(prod: dict[str, Any]) -> None:
    put(prod, "services[3].image", "torch-cuda12")
    assert_problem(prod, "services[3].image", "CPU shape cannot use the CUDA image", env="prod")


def test_region_is_checked(dev: dict[str, Any]) -> None:
    assert_problem(dev, "aws:region", "not an AWS region", region="us-west-9")
    assert parse_environment(dev, "dev", region="eu-central-1").region == "eu-central-1"


def test_the_name_comes_from_the_file(dev: dict[str, Any]) -> None:
    dev["name"] = "other"
    assert_problem(dev, "name", "comes from its file name")


def test_the_environment_must_be_a_mapping() -> None:
    assert_problem(["not", "a", "mapping"], "fermion:environment", "must be an object")


# --- good values at the edges --------------------------------------------------------------


def test_existing_vpc(dev: dict[str, Any]) -> None:
    dev["network"] = {
        "vpc_id": "vpc-0123456789abcdef0",
        "cidr": "10.40.0.0/16",
        "private_subnet_ids": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
    }
    spec = parse_environment(dev, "dev")
    assert spec.network.vpc_id == "vpc-0123456789abcdef0"
    dev["network"]["private_subnet_ids"] = dev["network"]["private_subnet_ids"][:1]
    assert_problem(dev, "network.private_subnet_ids", "at least two private subnets")
    dev["network"]["private_subnet_ids"] *= 2
    assert_problem(dev, "network.private_subnet_ids", "listed twice")


def test_no_nat_needs_the_interface_endpoints(dev: dict[str, Any]) -> None:
    put(dev, "network.nat", "none")
    assert_problem(dev, "network.interface_endpoints", "ecr.api, ecr.dkr, sts are missing")
    put(dev, "network.interface_endpoints", ["ecr.api", "ecr.dkr", "sts"])
    assert parse_environment(dev, "dev").network.nat == "none"


def test_private_endpoint_takes_no_cidrs(dev: dict[str, Any]) -> None:
    put(dev, "cluster.endpoint_public", False)
    assert_problem(dev, "cluster.public_access_cidrs", "endpoint is private")
    put(dev, "cluster.public_access_cidrs", [])
    assert parse_environment(dev, "dev").cluster.endpoint_public is False


def test_slices_of_a_node_count_towards_capacity(dev: dict[str, Any]) -> None:
    # A p4d node holds eight one-GPU replicas.
    dev["node_pools"] = [{"name": "a100", "shape": "gpu.a100-40gb", "size": {"min": 0, "max": 1}}]
    dev["services"] = [{"name": "big", "shape": "gpu.a100-40gb", "replicas": {"min": 0, "max": 8}}]
    assert parse_environment(dev, "dev").services[0].replicas.max == 8
    dev["services"][0]["replicas"]["max"] = 9
    assert_problem(dev, "node_pools[0].size.max", "reach 2 nodes in all")


def test_pools_of_one_shape_pool_their_capacity(prod: dict[str, Any]) -> None:
    # a10-on-demand (max 4) and a10-spot (max 8) together hold 12 gpu.a10 replicas.
    put(prod, "tenants[0].quota", {"gpus": 32, "cpu": 128, "memory_gib": 640, "pods": 40})
    put(prod, "services[0].replicas.max", 8)
    assert parse_environment(prod, "prod", region="us-east-1").services[0].replicas.max == 8
    put(prod, "services[0].replicas.max", 9)
    assert_problem(
        prod, "node_pools[0].size.max", "can scale to 13 replicas", env="prod", region="us-east-1"
    )


def test_tensor_spec_parsing() -> None:
    assert parse_tensor_spec("input__0:FP32:-1,256") == TensorSpec("input__0", "FP32", (-1, 256))
    assert parse_tensor_spec("text:BYTES:-1") == TensorSpec("text", "BYTES", (-1,))
    with pytest.raises(ValueError, match="-1 for a variable"):
        parse_tensor_spec("x:FP32:-2")


def test_the_public_api_resolves() -> None:
    import fermion.environments as stacks

    assert sorted(stacks.__all__) == sorted(stacks._EXPORTS)
    for name in stacks.__all__:
        assert getattr(stacks, name) is not None


def test_queue_depth_is_refused_with_the_metrics_that_work(dev: dict[str, Any]) -> None:
    put(dev, "services[0].autoscaling.metric", "queue_depth")
    problem = assert_problem(dev, "services[0].autoscaling.metric", "needs a Prometheus")
    assert "in_flight" in str(problem)


CERTIFICATE = "arn:aws:acm:us-west-2:123456789012:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789"


def test_a_public_service_needs_the_controller_a_hostname_and_a_certificate(
    dev: dict[str, Any],
) -> None:
    put(dev, "services[0].public", True)
    assert_problem(dev, "services[0].public", "AWS Load Balancer Controller")
    assert_problem(dev, "services[0].hostname", "TLS")
    assert_problem(dev, "services[0].certificate_arn", "TLS")
    put(dev, "cluster.load_balancer_controller", True)
    put(dev, "services[0].hostname", "embed.ml.example.com")
    put(dev, "services[0].certificate_arn", CERTIFICATE)
    # Traffic passes the interceptor, so a public service scales to zero like any other.
    put(dev, "services[0].replicas.min", 0)
    spec = parse_environment(dev, "dev", region="us-west-2")
    assert spec.services[0].public and spec.services[0].replicas.min == 0


def test_a_public_service_checks_tokens(dev: dict[str, Any]) -> None:
    put(dev, "cluster.load_balancer_controller", True)
    put(dev, "services[0].public", True)
    put(dev, "services[0].hostname", "embed.ml.example.com")
    put(dev, "services[0].certificate_arn", CERTIFICATE)
    put(dev, "services[0].auth", "none")
    problem = assert_problem(dev, "services[0].auth", "must check bearer", region="us-west-2")
    assert "make the service private" in str(problem)


def test_the_certificate_must_be_in_the_environments_region(dev: dict[str, Any]) -> None:
    put(dev, "cluster.load_balancer_controller", True)
    put(dev, "services[0].public", True)
    put(dev, "services[0].hostname", "embed.ml.example.com")
    put(dev, "services[0].certificate_arn", CERTIFICATE.replace("us-west-2", "eu-west-1"))
    problem = assert_problem(dev, "services[0].certificate_arn", "own region", region="us-west-2")
    assert "'eu-west-1'" in str(problem) and "us-west-2" in str(problem)


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("hostname", "embed", "not a DNS name"),
        ("hostname", "*.example.com", "not a DNS name"),
        ("hostname", "Embed.Example.com", "not a DNS name"),
        ("certificate_arn", "arn:aws:iam::123456789012:role/x", "not an ACM certificate ARN"),
    ],
)
def test_bad_hostnames_and_certificates_are_named(
    dev: dict[str, Any], key: str, value: str, fragment: str
) -> None:
    put(dev, f"services[0].{key}", value)
    assert_problem(dev, f"services[0].{key}", fragment)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("hostname", "embed.ml.example.com"),
        ("certificate_arn", CERTIFICATE),
        ("allowed_cidrs", ["203.0.113.0/24"]),
    ],
)
def test_a_private_service_has_no_public_settings(
    dev: dict[str, Any], key: str, value: Any
) -> None:
    put(dev, f"services[0].{key}", value)
    problem = assert_problem(dev, f"services[0].{key}", "only a public service")
    assert "public: true" in str(problem)


def test_a_private_service_may_turn_tokens_off(dev: dict[str, Any]) -> None:
    put(dev, "services[0].auth", "none")
    assert parse_environment(dev, "dev").services[0].auth == "none"


def test_a_torchscript_service_must_declare_its_inputs(dev: dict[str, Any]) -> None:
    put(dev, "services[0].model", {"format": "torchscript"})
    problem = assert_problem(dev, "services[0].inputs", "does not declare its inputs")
    assert "inputs: [input__0:FP32:" in str(problem)
    put(dev, "services[0].inputs", ["input__0:FP32:-1,4"])
    parse_environment(dev, "dev")


def test_only_known_pool_shapes_are_offered(dev: dict[str, Any]) -> None:
    dev["node_pools"] = [
        {"name": "typo", "shape": "gpu.t5"},
        {"name": "l4", "shape": "gpu.l4"},
    ]
    put(dev, "services[0].shape", "gpu.a10")
    problem = assert_problem(dev, "services[0].shape", "no node pool has this shape")
    assert "pools offer: gpu.l4)" in str(problem)
    assert "gpu.t5" not in str(problem)


def test_int8_runs_on_cpu_shapes_only(dev: dict[str, Any]) -> None:
    put(dev, "services[0].precision", "int8")
    problem = assert_problem(dev, "services[0].precision", "runs on the CPU only")
    assert "cpu.*" in str(problem)
    dev["node_pools"].append({"name": "cpu", "shape": "cpu.large"})
    put(dev, "services[0].shape", "cpu.large")
    assert parse_environment(dev, "dev").services[0].precision == "int8"
