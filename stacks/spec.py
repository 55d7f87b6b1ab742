"""EnvironmentSpec: one fermion environment, as written under `fermion:environment`.

Field-level rules (types, ranges, formats) are pydantic constraints. Rules that span fields
(min <= max, shapes exist, pools can hold their services, CIDRs do not overlap, names are unique)
live in `check_environment`, which reports every problem with its exact key path.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections import Counter
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    model_validator,
)

from fermion.stacks.errors import EnvironmentSpecError, SpecProblem
from fermion.stacks.shapes import ShapeCatalog, load_shapes

# Names become Kubernetes object names and AWS resource name prefixes: DNS-1035 labels, kept short
# enough that suffixes such as "-predictor-7d9f" still fit in 63 characters.
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
NAME_MAX = 40
EksVersion = Literal["1.30", "1.31", "1.32", "1.33", "1.34", "1.35"]
DEFAULT_EKS_VERSION: EksVersion = "1.34"
RUNTIME_IMAGES = ("torch-cpu", "torch-cuda12")
TENSOR_DTYPES = (
    "BOOL",
    "UINT8",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BF16",
    "BYTES",
)
AWS_REGIONS = (
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
)

_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_ECR_REPOSITORY = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_TENSOR_SPEC = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_.]*):(?P<dtype>[A-Z0-9]+):(?P<shape>.+)$")
_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IAM_PRINCIPAL = re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:(role|user)/[\w+=,.@/-]{1,512}$")


def bucket_name_problem(name: str) -> str | None:
    """Why `name` is not a legal S3 bucket name, or None when it is."""
    if not 3 <= len(name) <= 63:
        return "must be 3 to 63 characters long"
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", name):
        return (
            "may hold only lowercase letters, digits, dots and hyphens, and must begin and end "
            "with a letter or digit"
        )
    if ".." in name or ".-" in name or "-." in name:
        return "must not hold two dots in a row, or a dot beside a hyphen"
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        return "must not look like an IP address"
    if name.startswith(_BUCKET_RESERVED_PREFIXES):
        return f"must not begin with {', '.join(_BUCKET_RESERVED_PREFIXES)}"
    if name.endswith(_BUCKET_RESERVED_SUFFIXES):
        return f"must not end with {', '.join(_BUCKET_RESERVED_SUFFIXES)}"
    return None


def _legal_bucket(name: str) -> str:
    problem = bucket_name_problem(name)
    if problem is not None:
        raise ValueError(f"not a legal S3 bucket name: it {problem}")
    return name


def _legal_region(name: str) -> str:
    if name not in AWS_REGIONS:
        close = difflib.get_close_matches(name, AWS_REGIONS, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ValueError(
            f"not an AWS region; {hint}use a region code such as us-east-1, us-west-2 or eu-west-1"
        )
    return name


def _ecr_repository(name: str) -> str:
    if not 2 <= len(name) <= 256 or not _ECR_REPOSITORY.match(name):
        raise ValueError(
            "not a legal ECR repository name: use 2-256 lowercase letters, digits and "
            "'.', '_', '-' separators, with '/' between path parts (e.g. fermion/runtime)"
        )
    return name


def _s3_uri(uri: str) -> str:
    if not uri.startswith("s3://"):
        raise ValueError(
            "a deployed service loads its model from S3: write s3://BUCKET/PREFIX/, or leave "
            "uri out to use s3://<models bucket>/<service>/<version>/"
        )
    bucket = uri[len("s3://") :].split("/", 1)[0]
    problem = bucket_name_problem(bucket)
    if problem is not None:
        raise ValueError(
            f"bucket {bucket!r} in the URI is not a legal S3 bucket name: it {problem}"
        )
    return uri


def _handler_reference(ref: str) -> str:
    module, sep, cls = ref.partition(":")
    if not sep or not module or not cls.isidentifier():
        raise ValueError(
            "write the handler as MODULE:CLASS or FILE.py:CLASS, e.g. handler.py:EmbeddingHandler"
        )
    return ref


def parse_tensor_spec(text: str) -> tuple[str, str, tuple[int, ...]]:
    """Split `NAME:DTYPE:SHAPE` (e.g. `input__0:FP32:-1,256`) into its parts.

    -1 marks a variable dimension. Raises ValueError naming what is wrong.
    """
    match = _TENSOR_SPEC.match(text)
    if match is None:
        raise ValueError("write a tensor as NAME:DTYPE:SHAPE, e.g. input__0:FP32:-1,256")
    dtype = match.group("dtype")
    if dtype not in TENSOR_DTYPES:
        raise ValueError(f"datatype {dtype!r} is not one of {', '.join(TENSOR_DTYPES)}")
    dims: list[int] = []
    for part in match.group("shape").split(","):
        try:
            dim = int(part.strip())
        except ValueError:
            raise ValueError(
                f"dimension {part!r} is not an integer; use -1 for a variable dimension"
            ) from None
        if dim < -1 or dim == 0:
            raise ValueError(f"dimension {dim} must be positive, or -1 for a variable dimension")
        dims.append(dim)
    return match.group("name"), dtype, tuple(dims)


def _tensor_spec(text: str) -> str:
    parse_tensor_spec(text)
    return text


def _labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
            raise ValueError(f"label key {key!r} has a prefix that is not a DNS subdomain")
        if not _LABEL_NAME.match(name):
            raise ValueError(
                f"label key {key!r}: the name part must be 1-63 letters, digits, '-', '_' or '.', "
                "beginning and ending with a letter or digit"
            )
        if prefix.endswith(("kubernetes.io", "k8s.io")):
            raise ValueError(
                f"label key {key!r} is in a prefix the kubelet reserves; use your own prefix"
            )
        if prefix.startswith("fermion.dev") or prefix.endswith(".fermion.dev"):
            raise ValueError(f"label key {key!r} is in the fermion.dev prefix, which fermion sets")
        if not _LABEL_VALUE.match(value):
            raise ValueError(
                f"label value {value!r} for {key!r} must be at most 63 letters, digits, '-', '_' "
                "or '.', beginning and ending with a letter or digit"
            )
    return labels


def _env_vars(env: dict[str, str]) -> dict[str, str]:
    for key in env:
        if not _ENV_VAR.match(key):
            raise ValueError(f"environment variable name {key!r} must match [A-Za-z_][A-Za-z0-9_]*")
    return env


def _iam_principal(arn: str) -> str:
    if not _IAM_PRINCIPAL.match(arn):
        raise ValueError(
            "not an IAM role or user ARN, e.g. arn:aws:iam::123456789012:role/platform-admins"
        )
    return arn


Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, min_length=1, max_length=NAME_MAX)]
ShapeName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Labels = Annotated[dict[str, str], AfterValidator(_labels)]


def _cidr_text(value: object) -> object:
    # ipaddress would take an integer (or a YAML `true`) as an address; a CIDR must be written out.
    if not isinstance(value, str | ipaddress.IPv4Network):
        raise ValueError("write a CIDR block as text, e.g. 10.0.0.0/16")
    return value


CidrBlock = Annotated[ipaddress.IPv4Network, BeforeValidator(_cidr_text)]
SubnetId = Annotated[str, StringConstraints(pattern=r"^subnet-[0-9a-f]{8,17}$")]
TagValue = Annotated[str, StringConstraints(max_length=256)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SizeSpec(_Spec):
    """How many nodes a pool may have."""

    min: int = Field(0, ge=0, le=1000, description="Fewest nodes; 0 lets the pool scale to zero.")
    max: int = Field(2, ge=1, le=1000, description="Most nodes.")
    desired: int | None = Field(
        None, ge=0, le=1000, description="Nodes at creation; min when left out."
    )


class ReplicasSpec(_Spec):
    """How many replicas a service may run."""

    min: int = Field(1, ge=0, le=1000, description="Fewest replicas; 0 scales to zero when idle.")
    max: int = Field(2, ge=1, le=1000, description="Most replicas.")


class NetworkSpec(_Spec):
    """The VPC: created by fermion, or an existing one given by id."""

    vpc_id: Annotated[str, StringConstraints(pattern=r"^vpc-[0-9a-f]{8,17}$")] | None = None
    private_subnet_ids: list[SubnetId] = []
    public_subnet_ids: list[SubnetId] = []
    cidr: CidrBlock = ipaddress.IPv4Network("10.0.0.0/16")
    availability_zones: int = Field(3, ge=2, le=6)
    subnet_prefix_length: int = Field(
        20, ge=16, le=28, description="Prefix length of each subnet (a /20 holds 4091 pod IPs)."
    )
    nat: Literal["per_az", "single", "none"] = "per_az"
    interface_endpoints: list[Literal["ecr.api", "ecr.dkr", "sts", "logs"]] = [
        "ecr.api",
        "ecr.dkr",
        "sts",
        "logs",
    ]
    flow_logs: bool = True


class SystemNodesSpec(_Spec):
    """The CPU node group that runs cluster add-ons."""

    shape: ShapeName = "cpu.medium"
    size: SizeSpec = SizeSpec(min=2, max=3, desired=2)


class ClusterSpec(_Spec):
    """The EKS control plane and its system nodes."""

    name: Name | None = None
    version: EksVersion = DEFAULT_EKS_VERSION
    endpoint_public: bool = False
    public_access_cidrs: list[CidrBlock] = []
    service_cidr: CidrBlock = ipaddress.IPv4Network("172.20.0.0/16")
    log_types: list[Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]] = [
        "api",
        "audit",
        "authenticator",
    ]
    admin_arns: list[Annotated[str, AfterValidator(_iam_principal)]] = []
    irsa: bool = False
    system_nodes: SystemNodesSpec = SystemNodesSpec()


class NodePoolSpec(_Spec):
    """A pool of nodes of one shape: a GPU pool, or extra CPU capacity."""

    name: Name
    shape: ShapeName
    capacity: Literal["on_demand", "spot"] = "on_demand"
    size: SizeSpec = SizeSpec()
    ami: Literal["al2023", "bottlerocket"] = "al2023"
    disk_gib: int = Field(200, ge=20, le=16384)
    labels: Labels = {}


class StorageSpec(_Spec):
    """The S3 bucket that holds model artifacts."""

    bucket: Annotated[str, AfterValidator(_legal_bucket)] | None = None
    versioning: bool = True
    noncurrent_version_days: int = Field(30, ge=1, le=3650)
    access_logging: bool = False
    force_destroy: bool = False


class RegistrySpec(_Spec):
    """The ECR repository that holds runtime images."""

    repository: Annotated[str, AfterValidator(_ecr_repository)] = "fermion/runtime"
    scan_on_push: bool = True
    immutable_tags: bool = True
    keep_images: int = Field(50, ge=1, le=10000)


class ModelSpec(_Spec):
    """Where a service's model comes from and how to load it."""

    uri: Annotated[str, AfterValidator(_s3_uri)] | None = None
    version: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")] = "1"
    format: Literal["auto", "torchscript", "export", "handler"] = "auto"
    handler: Annotated[str, AfterValidator(_handler_reference)] | None = None


class BatchingSpec(_Spec):
    """Dynamic batching: requests that arrive together run as one batch."""

    max_batch_size: int = Field(8, ge=1, le=1024)
    max_delay_ms: float = Field(5.0, ge=0, le=1000)


class AutoscalingSpec(_Spec):
    """What the autoscaler watches, and the value per replica it aims for."""

    metric: Literal["in_flight", "queue_depth", "rps"] = "in_flight"
    target: float = Field(8.0, gt=0, le=100000)
    scale_down_delay_s: int = Field(300, ge=0, le=86400)


class ServiceSpec(_Spec):
    """An inference service: a model served on a shape, with batching and autoscaling."""

    name: Name
    shape: ShapeName
    model: ModelSpec = ModelSpec()
    image: Literal["torch-cpu", "torch-cuda12"] | None = None
    replicas: ReplicasSpec = ReplicasSpec()
    batching: BatchingSpec = BatchingSpec()
    autoscaling: AutoscalingSpec = AutoscalingSpec()
    timeout_s: float = Field(30.0, gt=0, le=3600)
    inputs: list[Annotated[str, AfterValidator(_tensor_spec)]] = []
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    env: Annotated[dict[str, str], AfterValidator(_env_vars)] = {}
    public: bool = False


class EnvironmentSpec(_Spec):
    """One fermion environment: everything `fermion up ENV` creates.

    Construct it with `parse_environment` (from data) or directly; either way the cross-field
    rules run and a bad spec raises `EnvironmentSpecError`.
    """

    name: Name
    region: Annotated[str, AfterValidator(_legal_region)] = "us-west-2"
    network: NetworkSpec = NetworkSpec()
    cluster: ClusterSpec = ClusterSpec()
    node_pools: list[NodePoolSpec] = []
    storage: StorageSpec = StorageSpec()
    registry: RegistrySpec = RegistrySpec()
    services: list[ServiceSpec] = []
    tags: Annotated[dict[str, TagValue], Field(max_length=40)] = {}

    @model_validator(mode="after")
    def _cross_field_rules(self, info: ValidationInfo) -> EnvironmentSpec:
        context: dict[str, Any] = info.context if isinstance(info.context, dict) else {}
        problems = check_environment(self, context.get("shapes"))
        if problems:
            raise EnvironmentSpecError(str(context.get("source", "EnvironmentSpec")), problems)
        return self

    @property
    def cluster_name(self) -> str:
        return self.cluster.name if self.cluster.name is not None else f"fermion-{self.name}"

    def image_for(self, service: ServiceSpec) -> str:
        """The runtime image a service runs: its own choice, else CUDA for GPU shapes."""
        if service.image is not None:
            return service.image
        return "torch-cuda12" if service.shape.startswith("gpu.") else "torch-cpu"


def _dupes(names: Iterable[str]) -> set[str]:
    return {name for name, count in Counter(names).items() if count > 1}


def _check_size(path: str, low: int, high: int, desired: int | None) -> list[SpecProblem]:
    problems = []
    if low > high:
        problems.append(
            SpecProblem(
                f"{path}.max",
                f"max must be at least min ({low})",
                str(high),
                f"Set max to {low} or more, or lower min",
            )
        )
    if desired is not None and not low <= desired <= high:
        problems.append(
            SpecProblem(
                f"{path}.desired",
                f"desired must lie between min ({low}) and max ({high})",
                str(desired),
                "Change desired, or leave it out to start at min",
            )
        )
    return problems


def _check_shape(path: str, name: str, shapes: ShapeCatalog) -> SpecProblem | None:
    if name in shapes:
        return None
    suggestion = shapes.suggest(name)
    hint = f"Did you mean {suggestion!r}? " if suggestion else ""
    return SpecProblem(
        path,
        "unknown shape",
        repr(name),
        f"{hint}Run `fermion shapes` to list the {len(shapes)} shapes",
    )


def _check_network(spec: EnvironmentSpec) -> list[SpecProblem]:
    net = spec.network
    problems: list[SpecProblem] = []
    if not net.cidr.is_private:
        problems.append(
            SpecProblem(
                "network.cidr",
                "the VPC CIDR must be a private range",
                str(net.cidr),
                "Use a block in 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
            )
        )
    if not 16 <= net.cidr.prefixlen <= 24:
        problems.append(
            SpecProblem(
                "network.cidr",
                "a VPC CIDR must be between /16 and /24",
                str(net.cidr),
                "Pick a prefix length from 16 to 24",
            )
        )
    subnets = 2 * net.availability_zones  # one public and one private per zone
    room = net.subnet_prefix_length - net.cidr.prefixlen
    if room < 0 or 2**room < subnets:
        problems.append(
            SpecProblem(
                "network.subnet_prefix_length",
                f"{subnets} subnets of this size do not fit in {net.cidr}",
                f"/{net.subnet_prefix_length}",
                f"Use a prefix length of at least "
                f"{net.cidr.prefixlen + (subnets - 1).bit_length()}, "
                "a larger VPC CIDR, or fewer availability_zones",
            )
        )
    if net.vpc_id is None and (net.private_subnet_ids or net.public_subnet_ids):
        problems.append(
            SpecProblem(
                "network.private_subnet_ids",
                "subnet ids only apply to an existing VPC",
                None,
                "Set network.vpc_id too, or remove the subnet ids",
            )
        )
    if net.vpc_id is not None and len(net.private_subnet_ids) < 2:
        problems.append(
            SpecProblem(
                "network.private_subnet_ids",
                "an existing VPC needs at least two private subnets in "
                "different zones (EKS requires two)",
                str(len(net.private_subnet_ids)),
                "List the private subnet ids to use",
            )
        )
    for field, ids in (
        ("private_subnet_ids", net.private_subnet_ids),
        ("public_subnet_ids", net.public_subnet_ids),
    ):
        for dup in sorted(_dupes(ids)):
            problems.append(
                SpecProblem(f"network.{field}", "subnet listed twice", dup, "List each subnet once")
            )
    if net.nat == "none":
        missing = [e for e in ("ecr.api", "ecr.dkr", "sts") if e not in net.interface_endpoints]
        if missing:
            problems.append(
                SpecProblem(
                    "network.interface_endpoints",
                    "with nat: none, private nodes reach ECR and STS only through "
                    f"interface endpoints, and {', '.join(missing)} are missing",
                    None,
                    "Add them, or set nat to single or per_az",
                )
            )
    cluster = spec.cluster
    if cluster.service_cidr.overlaps(net.cidr):
        problems.append(
            SpecProblem(
                "cluster.service_cidr",
                f"overlaps the VPC CIDR {net.cidr}",
                str(cluster.service_cidr),
                "Pick a block that does not overlap, such as 172.20.0.0/16",
            )
        )
    if not cluster.service_cidr.is_private or not 12 <= cluster.service_cidr.prefixlen <= 24:
        problems.append(
            SpecProblem(
                "cluster.service_cidr",
                "EKS needs a private block between /12 and /24",
                str(cluster.service_cidr),
                "Use a block such as 172.20.0.0/16",
            )
        )
    if cluster.endpoint_public and not cluster.public_access_cidrs:
        problems.append(
            SpecProblem(
                "cluster.public_access_cidrs",
                "a public endpoint needs the CIDRs that may reach it",
                "[]",
                "List your office or VPN ranges (0.0.0.0/0 opens it to the "
                "internet and must be written out)",
            )
        )
    if not cluster.endpoint_public and cluster.public_access_cidrs:
        problems.append(
            SpecProblem(
                "cluster.public_access_cidrs",
                "CIDRs are set but the endpoint is private",
                None,
                "Set cluster.endpoint_public: true, or remove the CIDRs",
            )
        )
    for i, block in enumerate(cluster.public_access_cidrs):
        for j in range(i):
            if block.overlaps(cluster.public_access_cidrs[j]):
                problems.append(
                    SpecProblem(
                        f"cluster.public_access_cidrs[{i}]",
                        f"overlaps public_access_cidrs[{j}] ({cluster.public_access_cidrs[j]})",
                        str(block),
                        "Merge or remove one of them",
                    )
                )
    for dup in sorted(_dupes(cluster.admin_arns)):
        problems.append(
            SpecProblem(
                "cluster.admin_arns", "principal listed twice", dup, "List each principal once"
            )
        )
    return problems


def _check_workloads(spec: EnvironmentSpec, shapes: ShapeCatalog) -> list[SpecProblem]:
    problems: list[SpecProblem] = []
    system = spec.cluster.system_nodes
    problem = _check_shape("cluster.system_nodes.shape", system.shape, shapes)
    if problem is not None:
        problems.append(problem)
    elif shapes.get(system.shape).is_gpu:
        problems.append(
            SpecProblem(
                "cluster.system_nodes.shape",
                "system nodes run cluster add-ons and must be a CPU shape",
                repr(system.shape),
                "Use cpu.medium or cpu.large",
            )
        )
    problems += _check_size(
        "cluster.system_nodes.size", system.size.min, system.size.max, system.size.desired
    )
    if system.size.max < 1 or system.size.min < 1:
        problems.append(
            SpecProblem(
                "cluster.system_nodes.size.min",
                "the system node group needs at least one node",
                str(system.size.min),
                "Set min to 2 for a highly available control of add-ons",
            )
        )

    pool_dupes = _dupes(p.name for p in spec.node_pools)
    for i, pool in enumerate(spec.node_pools):
        path = f"node_pools[{i}]"
        if pool.name in pool_dupes:
            problems.append(
                SpecProblem(
                    f"{path}.name",
                    "node pool names must be unique",
                    repr(pool.name),
                    "Rename one of the pools",
                )
            )
        problem = _check_shape(f"{path}.shape", pool.shape, shapes)
        if problem is not None:
            problems.append(problem)
        problems += _check_size(f"{path}.size", pool.size.min, pool.size.max, pool.size.desired)

    service_dupes = _dupes(s.name for s in spec.services)
    pool_shapes = {p.shape for p in spec.node_pools}
    for i, svc in enumerate(spec.services):
        path = f"services[{i}]"
        if svc.name in service_dupes:
            problems.append(
                SpecProblem(
                    f"{path}.name",
                    "service names must be unique",
                    repr(svc.name),
                    "Rename one of the services",
                )
            )
        problem = _check_shape(f"{path}.shape", svc.shape, shapes)
        if problem is not None:
            problems.append(problem)
        elif svc.shape not in pool_shapes:
            offered = ", ".join(sorted(pool_shapes)) if pool_shapes else "none"
            problems.append(
                SpecProblem(
                    f"{path}.shape",
                    "no node pool has this shape",
                    repr(svc.shape),
                    f"Add a node pool with shape {svc.shape}, or use a shape a pool "
                    f"has (pools offer: {offered})",
                )
            )
        else:
            image = spec.image_for(svc)
            if shapes.get(svc.shape).is_gpu and image == "torch-cpu":
                problems.append(
                    SpecProblem(
                        f"{path}.image",
                        "a GPU shape needs a CUDA image",
                        repr(image),
                        "Use torch-cuda12, or leave image out",
                    )
                )
            if not shapes.get(svc.shape).is_gpu and image == "torch-cuda12":
                problems.append(
                    SpecProblem(
                        f"{path}.image",
                        "a CPU shape cannot use the CUDA image",
                        repr(image),
                        "Use torch-cpu, or leave image out",
                    )
                )
        if svc.replicas.min > svc.replicas.max:
            problems.append(
                SpecProblem(
                    f"{path}.replicas.max",
                    f"max must be at least min ({svc.replicas.min})",
                    str(svc.replicas.max),
                    f"Set max to {svc.replicas.min} or more, or lower min",
                )
            )
        if (svc.model.format == "handler") != (svc.model.handler is not None):
            problems.append(
                SpecProblem(
                    f"{path}.model.handler",
                    "a handler is named exactly when format is handler",
                    repr(svc.model.handler),
                    "Set format: handler with handler: FILE.py:CLASS, or drop handler",
                )
            )
        names = [parse_tensor_spec(t)[0] for t in svc.inputs]
        for dup in sorted(_dupes(names)):
            problems.append(
                SpecProblem(
                    f"{path}.inputs",
                    "input tensor named twice",
                    dup,
                    "Give each input a distinct name",
                )
            )

    problems += _check_capacity(spec, shapes)
    return problems


def _check_capacity(spec: EnvironmentSpec, shapes: ShapeCatalog) -> list[SpecProblem]:
    """Services on a shape must fit in the pools of that shape at their maximum scale."""
    problems: list[SpecProblem] = []
    for shape_name in sorted({p.shape for p in spec.node_pools if p.shape in shapes}):
        shape = shapes.get(shape_name)
        pools = [(i, p) for i, p in enumerate(spec.node_pools) if p.shape == shape_name]
        capacity = sum(p.size.max for _, p in pools) * shape.replicas_per_node
        demand = sum(s.replicas.max for s in spec.services if s.shape == shape_name)
        if demand > capacity:
            first, _ = pools[0]
            need = -(-demand // shape.replicas_per_node)
            problems.append(
                SpecProblem(
                    f"node_pools[{first}].size.max",
                    f"services on {shape_name} can scale to {demand} replicas, but its "
                    f"pools hold at most {capacity}",
                    str(spec.node_pools[first].size.max),
                    f"Let the {shape_name} pools reach {need} nodes in all, or lower "
                    "the services' replicas.max",
                )
            )
    return problems


def check_environment(
    spec: EnvironmentSpec, shapes: ShapeCatalog | None = None
) -> list[SpecProblem]:
    """Every cross-field problem in `spec`, each with its key path; empty when it is valid."""
    catalog = load_shapes() if shapes is None else shapes
    return _check_network(spec) + _check_workloads(spec, catalog)
