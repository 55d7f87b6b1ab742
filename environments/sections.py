"""The sections of an environment: network, cluster, node pools, storage, registry, services.

Field-level rules (types, ranges, formats) are pydantic constraints on these models. The
environment that holds them, and the rules that span sections, are `fermion.environments.spec`
and `fermion.environments.rules`.
"""

from __future__ import annotations

import ipaddress
import math
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from fermion.environments import formats
from fermion.environments.formats import NAME_MAX, NAME_PATTERN

EksVersion = Literal["1.30", "1.31", "1.32", "1.33", "1.34", "1.35"]
DEFAULT_EKS_VERSION: EksVersion = "1.34"

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, min_length=1, max_length=NAME_MAX)]
ShapeName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Labels = Annotated[dict[str, str], AfterValidator(formats.labels)]
CidrBlock = Annotated[ipaddress.IPv4Network, BeforeValidator(formats.cidr_text)]
SubnetId = Annotated[str, StringConstraints(pattern=r"^subnet-[0-9a-f]{8,17}$")]
TagValue = Annotated[str, StringConstraints(max_length=256)]


class Spec(BaseModel):
    """The base of every section: unknown keys are errors, and values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SizeSpec(Spec):
    """How many nodes a pool may have."""

    min: int = Field(0, ge=0, le=1000, description="Fewest nodes; 0 lets the pool scale to zero.")
    max: int = Field(2, ge=1, le=1000, description="Most nodes.")
    desired: int | None = Field(
        None, ge=0, le=1000, description="Nodes at creation; min when left out."
    )


class ReplicasSpec(Spec):
    """How many replicas a service may run."""

    min: int = Field(1, ge=0, le=1000, description="Fewest replicas; 0 scales to zero when idle.")
    max: int = Field(2, ge=1, le=1000, description="Most replicas.")


class NetworkSpec(Spec):
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


class SystemNodesSpec(Spec):
    """The CPU node group that runs cluster add-ons."""

    shape: ShapeName = "cpu.medium"
    size: SizeSpec = SizeSpec(min=2, max=3, desired=2)


class ClusterSpec(Spec):
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
    admin_arns: list[Annotated[str, AfterValidator(formats.iam_principal)]] = []
    irsa: bool = False
    load_balancer_controller: bool = Field(
        False, description="Install the AWS Load Balancer Controller for public services."
    )
    system_nodes: SystemNodesSpec = SystemNodesSpec()


class NodePoolSpec(Spec):
    """A pool of nodes of one shape: a GPU pool, or extra CPU capacity."""

    name: Name
    shape: ShapeName
    capacity: Literal["on_demand", "spot"] = "on_demand"
    size: SizeSpec = SizeSpec()
    ami: Literal["al2023", "bottlerocket"] = "al2023"
    disk_gib: int = Field(200, ge=20, le=16384)
    labels: Labels = {}


class StorageSpec(Spec):
    """The S3 bucket that holds model artifacts."""

    bucket: Annotated[str, AfterValidator(formats.legal_bucket)] | None = None
    versioning: bool = True
    noncurrent_version_days: int = Field(30, ge=1, le=3650)
    access_logging: bool = False
    force_destroy: bool = False


class RegistrySpec(Spec):
    """The ECR repository that holds runtime images."""

    repository: Annotated[str, AfterValidator(formats.ecr_repository)] = "fermion/runtime"
    scan_on_push: bool = True
    immutable_tags: bool = True
    keep_images: int = Field(50, ge=1, le=10000)


class ModelSpec(Spec):
    """Where a service's model comes from and how to load it."""

    uri: Annotated[str, AfterValidator(formats.s3_uri)] | None = None
    version: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")] = "1"
    format: Literal["auto", "torchscript", "export", "handler"] = "auto"
    handler: Annotated[str, AfterValidator(formats.handler_reference)] | None = None


class ModelCacheSpec(Spec):
    """A cache of model files on each node, shared by the model servers on it: off by default
    (docs/models.md says why)."""

    enabled: bool = Field(
        False, description="Run the cache on every node, and have services load through it."
    )
    size_gib: int = Field(
        100, ge=1, le=16384, description="Disk each node gives the cache, in GiB (an emptyDir)."
    )


class BatchingSpec(Spec):
    """Dynamic batching: requests that arrive together run as one batch."""

    max_batch_size: int = Field(8, ge=1, le=1024)
    max_delay_ms: float = Field(5.0, ge=0, le=1000)


class AutoscalingSpec(Spec):
    """What the autoscaler watches, and the value per replica it aims for."""

    metric: Literal["in_flight", "queue_depth", "rps"] = "in_flight"
    target: float = Field(8.0, gt=0, le=100000)
    scale_down_delay_s: int = Field(300, ge=0, le=86400)


class TokenSlotsSpec(Spec):
    """A service's two bearer tokens, both valid at once. Raising a slot's number replaces that
    slot's token at the next `fermion up`; the other token stays valid meanwhile, so clients
    move over with no downtime."""

    primary: int = Field(1, ge=1, le=1_000_000)
    secondary: int = Field(1, ge=1, le=1_000_000)


class ServiceSpec(Spec):
    """An inference service: a model served on a shape, with batching and autoscaling."""

    name: Name
    shape: ShapeName
    model: ModelSpec = ModelSpec()
    image: Literal["torch-cpu", "torch-cuda12"] | None = None
    replicas: ReplicasSpec = ReplicasSpec()
    batching: BatchingSpec = BatchingSpec()
    autoscaling: AutoscalingSpec = AutoscalingSpec()
    timeout_s: float = Field(30.0, gt=0, le=3600)
    inputs: list[Annotated[str, AfterValidator(formats.tensor_spec)]] = []
    precision: Literal["fp32", "fp16", "bf16", "int8"] = "fp32"
    env: Annotated[dict[str, str], AfterValidator(formats.env_vars)] = {}
    pip_packages: list[Annotated[str, AfterValidator(formats.pip_requirement)]] = []
    tenant: Name = Field(
        "default", description="The tenant whose namespace, quota and network policy it runs in."
    )
    auth: Literal["token", "none"] = Field(
        "token", description="Whether requests need a bearer token; `none` only for private ones."
    )
    tokens: TokenSlotsSpec = TokenSlotsSpec()
    public: bool = Field(
        False, description="Reachable from the internet over HTTPS, through an ALB."
    )
    hostname: Annotated[str, AfterValidator(formats.hostname)] | None = Field(
        None, description="The public DNS name the ALB answers for (public services)."
    )
    certificate_arn: Annotated[str, AfterValidator(formats.acm_certificate)] | None = Field(
        None, description="The ACM certificate for `hostname`, in the environment's region."
    )
    allowed_cidrs: list[CidrBlock] = Field(
        [], description="Source ranges that may reach a public service; empty lets any address."
    )


class TenantQuotaSpec(Spec):
    """What all of a tenant's pods may request together, enforced by a ResourceQuota."""

    gpus: int = Field(0, ge=0, le=100_000, description="GPUs.")
    cpu: float = Field(gt=0, le=1_000_000, description="CPU cores requested.")
    memory_gib: float = Field(gt=0, le=10_000_000, description="Memory in GiB.")
    pods: int = Field(ge=1, le=1_000_000, description="Pods.")

    @property
    def cpu_millicores(self) -> int:
        """`cpu` in millicores, as the ResourceQuota holds it (a fraction of one is dropped)."""
        return math.floor(self.cpu * 1000 + 1e-6)

    @property
    def memory_mib(self) -> int:
        """`memory_gib` in MiB, as the ResourceQuota holds it (a fraction of one is dropped)."""
        return math.floor(self.memory_gib * 1024 + 1e-6)


class TenantSpec(Spec):
    """A team's share of the cluster: its own namespace, quota and network isolation."""

    name: Name
    namespace: Name | None = Field(
        None, description="Its namespace; the tenant's name when left out."
    )
    quota: TenantQuotaSpec

    @property
    def namespace_name(self) -> str:
        return self.name if self.namespace is None else self.namespace


class PolicyWaiverSpec(Spec):
    """An advisory policy finding this environment accepts for one resource, and why. The plan
    still prints the finding, with the reason; a mandatory policy cannot be waived."""

    policy: Annotated[
        str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$", min_length=1, max_length=64)
    ]
    resource: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(
        description="The resource's name, as `fermion plan` shows it (dev-cluster)."
    )
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]
