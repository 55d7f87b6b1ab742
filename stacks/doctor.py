"""`fermion doctor ENV`: the checks that catch, before a deploy, what costs GPU teams the most.

Each check asks AWS one question through `fermion.stacks.aws_lookups` and answers pass, warn or
fail with a fix: the credentials, the region, the zones that sell each pool's instance types, the
vCPU quotas of the GPU families, the EKS version's support, the NVIDIA AMI for that version, the
models bucket's name and the state backend. A check that cannot be made (a permission the caller
lacks, an API the endpoint does not have) warns and says why; it never stops the others.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fermion.environments.shapes import Shape
from fermion.environments.spec import EnvironmentSpec
from fermion.stacks.aws_errors import (
    HOW_TO_CONFIGURE,
    AwsCredentialsError,
    AwsPermissionError,
    AwsRequestError,
    AwsUnreachableError,
    aws_errors,
)
from fermion.stacks.aws_lookups import Aws, LookupUnavailableError
from fermion.stacks.backend import choose_backend

__all__ = ["QUOTA_CODES", "Check", "DoctorReport", "Status", "nvidia_ami_parameter", "run_doctor"]

Status = Literal["pass", "warn", "fail"]
Capacity = Literal["on_demand", "spot"]

# EC2's vCPU quotas by instance family and purchase option (Service Quotas codes).
QUOTA_CODES: dict[tuple[str, Capacity], str] = {
    ("G and VT", "on_demand"): "L-DB2E81BA",
    ("P", "on_demand"): "L-417A185B",
    ("Standard", "on_demand"): "L-1216C47A",
    ("G and VT", "spot"): "L-3819A6DF",
    ("P", "spot"): "L-7212CCBC",
    ("Standard", "spot"): "L-34B43A08",
}
_FAMILIES = {"g": "G and VT", "vt": "G and VT", "p": "P"}
_STANDARD_LETTERS = frozenset("acdhimrtz")
_TYPE_PREFIX = re.compile(r"^([a-z]+)\d")
_NVIDIA_AMI = {
    "al2023": (
        "/aws/service/eks/optimized-ami/{v}/amazon-linux-2023/x86_64/nvidia/recommended/image_id"
    ),
    "bottlerocket": "/aws/service/bottlerocket/aws-k8s-{v}-nvidia/x86_64/latest/image_id",
}


@dataclass(frozen=True)
class Check:
    """One preflight check's verdict, with what to do about it when it is not a pass."""

    name: str
    status: Status
    detail: str
    fix: str | None = None


@dataclass(frozen=True)
class DoctorReport:
    """Every check of one environment."""

    environment: str
    region: str
    account: str | None
    checks: tuple[Check, ...]

    @property
    def failed(self) -> bool:
        """Whether any check failed (warnings do not count)."""
        return any(c.status == "fail" for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        """The `fermion doctor --json` document."""
        return {
            "environment": self.environment,
            "region": self.region,
            "account": self.account,
            "ok": not self.failed,
            "checks": [
                {"name": c.name, "status": c.status, "detail": c.detail, "fix": c.fix}
                for c in self.checks
            ],
        }


@dataclass(frozen=True)
class _Pool:
    name: str
    shape: Shape
    capacity: Capacity
    max_size: int
    ami: str


def nvidia_ami_parameter(version: str, ami: str) -> str:
    """The public SSM parameter that holds the NVIDIA AMI of an EKS version and AMI type."""
    return _NVIDIA_AMI[ami].format(v=version)


def run_doctor(spec: EnvironmentSpec, stacks_dir: Path, aws: Aws | None = None) -> DoctorReport:
    """Check `spec` against the account and region the credentials reach."""
    aws = Aws(spec.region) if aws is None else aws
    try:
        identity = aws.identity()
    except AwsCredentialsError as exc:
        check = Check("credentials", "fail", exc.problem, HOW_TO_CONFIGURE)
        return DoctorReport(spec.name, spec.region, None, (check,))
    except AwsUnreachableError as exc:
        check = Check("credentials", "fail", f"AWS did not answer at {exc.endpoint}", str(exc))
        return DoctorReport(spec.name, spec.region, None, (check,))
    checks = [Check("credentials", "pass", f"account {identity.account} as {identity.arn}")]
    pools = _pools(spec)
    steps: list[tuple[str, Callable[[], Iterator[Check]]]] = [
        ("region", lambda: _region(aws)),
        ("zones", lambda: _zones(aws, spec, pools)),
        ("quotas", lambda: _quotas(aws, pools)),
        ("EKS version", lambda: _eks_version(aws, spec.cluster.version)),
        ("NVIDIA AMI", lambda: _nvidia_amis(aws, spec.cluster.version, pools)),
        ("models bucket", lambda: _models_bucket(aws, spec, identity.account)),
        ("certificates", lambda: _certificates(aws, spec)),
        ("state backend", lambda: _state_backend(aws, spec.name, stacks_dir)),
    ]
    for name, step in steps:
        checks.extend(_guarded(name, step))
    return DoctorReport(spec.name, spec.region, identity.account, tuple(checks))


def _guarded(name: str, step: Callable[[], Iterator[Check]]) -> list[Check]:
    """A step's checks; a step that cannot finish warns why, and the others still run."""
    try:
        with aws_errors(every=True):
            return list(step())
    except AwsPermissionError as exc:
        detail = f"could not be checked: AWS refused {exc.operation} ({exc.message})"
        fix = f"Allow {exc.operation} for the caller (an IAM policy), then run doctor again"
    except LookupUnavailableError as exc:
        detail = f"could not be checked: {exc.operation} is not available ({exc.why})"
        fix = "Upgrade boto3 and botocore, or check this in the AWS console"
    except AwsRequestError as exc:
        detail = f"could not be checked: {exc.operation} failed ({exc.code}: {exc.message})"
        fix = "Run doctor again; if it fails the same way, check this in the AWS console"
    return [Check(name, "warn", detail, fix)]


def _pools(spec: EnvironmentSpec) -> list[_Pool]:
    system = spec.cluster.system_nodes
    pools = [_Pool("system", spec.shapes.get(system.shape), "on_demand", system.size.max, "al2023")]
    for pool in spec.node_pools:
        shape = spec.shapes.get(pool.shape)
        pools.append(_Pool(pool.name, shape, pool.capacity, pool.size.max, pool.ami))
    return pools


def _region(aws: Aws) -> Iterator[Check]:
    status = aws.region_status()
    if status.enabled:
        yield Check("region", "pass", f"{status.name} is enabled ({status.opt_in})")
    elif status.opt_in is None:
        yield Check(
            "region", "fail", f"AWS knows no region {status.name}", "Fix aws:region in the file"
        )
    else:
        yield Check(
            "region",
            "fail",
            f"{status.name} is not enabled for the account ({status.opt_in})",
            f"Enable it: `aws account enable-region --region-name {status.name}`, or in the "
            "console under Account, AWS Regions",
        )


def _zones(aws: Aws, spec: EnvironmentSpec, pools: list[_Pool]) -> Iterator[Check]:
    wanted = spec.network.availability_zones
    zones = aws.zones()
    network = zones[:wanted]
    if len(zones) < wanted:
        yield Check(
            "zones",
            "fail",
            f"the network wants {wanted} zones; {aws.region} has {len(zones)}: {_names(zones)}",
            "Lower network.availability_zones",
        )
    else:
        yield Check("zones", "pass", f"the network uses {_names(network)}")
    types = {it.name for pool in pools for it in pool.shape.instance_types}
    offered = aws.offering_zones(types)
    for pool in pools:
        names = [it.name for it in pool.shape.instance_types]
        # A managed node group may launch any of its types, so a zone must sell all of them.
        selling = [z for z in zones if all(z in offered.get(t, []) for t in names)]
        usable = [z for z in network if z in selling]
        what = f"{pool.shape.name} ({', '.join(names)})"
        check = f"zones: {pool.name}"
        if not selling:
            yield Check(
                check,
                "fail",
                f"no zone of {aws.region} sells all of {what}",
                "Choose another shape for the pool, or another region",
            )
        elif not usable:
            yield Check(
                check,
                "fail",
                f"{what} is sold in {_names(selling)}, none of the network's {_names(network)}",
                "Choose another shape, or raise network.availability_zones to reach those zones",
            )
        elif len(usable) < len(network):
            yield Check(
                check,
                "warn",
                f"{what} is sold in {_names(usable)} only, of the network's {_names(network)}; "
                "its nodes go only there",
                "Fine if one zone's capacity is enough; otherwise choose a shape sold in every "
                "zone, or another region",
            )
        else:
            yield Check(check, "pass", f"{what} is sold in {_names(usable)}")


def _family(instance_type: str) -> str | None:
    match = _TYPE_PREFIX.match(instance_type)
    if match is None:
        return None
    letters = match.group(1)
    if letters in _FAMILIES:
        return _FAMILIES[letters]
    return "Standard" if len(letters) == 1 and letters in _STANDARD_LETTERS else None


def _quotas(aws: Aws, pools: list[_Pool]) -> Iterator[Check]:
    needs: dict[tuple[str, Capacity], list[tuple[_Pool, int]]] = {}
    for pool in pools:
        # The largest type of the pool: a managed node group may launch any of them.
        largest = max(pool.shape.instance_types, key=lambda it: it.vcpu)
        family = _family(largest.name)
        if family is not None and pool.max_size > 0:
            needs.setdefault((family, pool.capacity), []).append((pool, largest.vcpu))
    for (family, capacity), parts in sorted(needs.items()):
        code = QUOTA_CODES[(family, capacity)]
        need = sum(pool.max_size * vcpu for pool, vcpu in parts)
        how = " + ".join(f"{p.name} {p.max_size} x {vcpu}" for p, vcpu in parts)
        kind = "on-demand" if capacity == "on_demand" else "spot"
        name = f"quota: {family} {kind}"
        quota = aws.quota(code)
        source = "" if quota.applied else ", AWS's default"
        have = f"{quota.value:g} vCPUs ({code}{source})"
        if need > quota.value:
            yield Check(
                name,
                "fail",
                f"the pools need up to {need} vCPUs ({how}); the quota is {have}",
                f"Ask for more: `aws service-quotas request-service-quota-increase --service-code "
                f"ec2 --quota-code {code} --desired-value {need} --region {aws.region}`, or "
                "lower the pools' size.max",
            )
        else:
            yield Check(
                name,
                "pass",
                f"the pools need up to {need} vCPUs ({how}) of {have}; other instances of the "
                "account count too",
            )


def _eks_version(aws: Aws, version: str) -> Iterator[Check]:
    found = aws.cluster_version(version)
    name = "EKS version"
    if found is None or found.status == "UNSUPPORTED":
        yield Check(
            name,
            "fail",
            f"EKS does not support Kubernetes {version} in {aws.region}",
            "Set cluster.version to a version in standard support",
        )
    elif found.status == "EXTENDED_SUPPORT":
        until = found.end_of_extended_support or "its end date"
        yield Check(
            name,
            "warn",
            f"Kubernetes {version} is in extended support until {until}, billed at a higher "
            "hourly rate",
            "Set cluster.version to a version in standard support",
        )
    else:
        ends = found.end_of_standard_support
        yield Check(
            name,
            "pass",
            f"Kubernetes {version} is in standard support"
            + (f" until {ends}" if ends is not None else ""),
        )


def _nvidia_amis(aws: Aws, version: str, pools: list[_Pool]) -> Iterator[Check]:
    amis = sorted({pool.ami for pool in pools if pool.shape.is_gpu})
    if not amis:
        yield Check("NVIDIA AMI", "pass", "no GPU pool: none needed")
    for ami in amis:
        parameter = nvidia_ami_parameter(version, ami)
        image = aws.parameter(parameter)
        name = f"NVIDIA AMI: {ami}"
        if image is None:
            yield Check(
                name,
                "fail",
                f"AWS publishes no NVIDIA {ami} AMI for EKS {version} in {aws.region} "
                f"({parameter})",
                "Choose another cluster.version, or the other ami (al2023 or bottlerocket)",
            )
        else:
            yield Check(name, "pass", f"{image} for EKS {version} ({parameter})")


def _models_bucket(aws: Aws, spec: EnvironmentSpec, account: str) -> Iterator[Check]:
    bucket = spec.storage.bucket
    name = "models bucket"
    if bucket is None:
        yield Check(name, "pass", "Pulumi names the bucket at creation, so its name is free")
        return
    state = aws.bucket_state(bucket, owner=account)
    if state == "free":
        yield Check(name, "pass", f"{bucket} is free")
    elif state == "ours":
        yield Check(
            name,
            "pass",
            f"{bucket} exists in this account {account}: fine when this environment's stack "
            "made it",
        )
    else:
        yield Check(
            name,
            "fail",
            f"{bucket} belongs to another AWS account",
            f"Choose another storage.bucket in Pulumi.{spec.name}.yaml (or leave it out to let "
            "Pulumi name it)",
        )


def _certificates(aws: Aws, spec: EnvironmentSpec) -> Iterator[Check]:
    """Each public service's certificate exists in the region, is issued, and covers its
    hostname: the load balancer cannot serve HTTPS otherwise."""
    name = "certificates"
    public = [
        (i, s) for i, s in enumerate(spec.services) if s.public and s.certificate_arn is not None
    ]
    if not public:
        yield Check(name, "pass", "no public service: none needed")
        return
    for i, service in public:
        arn, host = str(service.certificate_arn), str(service.hostname)
        where = f"services[{i}] ({service.name})"
        found = aws.certificate(arn)
        if found is None:
            yield Check(
                name,
                "fail",
                f"{where}: no certificate {arn} in {spec.region}",
                f"Request one: `aws acm request-certificate --domain-name {host} "
                f"--validation-method DNS --region {spec.region}`, or import yours, and set "
                "its ARN as certificate_arn",
            )
        elif found.status != "ISSUED":
            yield Check(
                name,
                "fail",
                f"{where}: the certificate for {host} is {found.status}, not ISSUED",
                "Finish its validation (add the DNS record ACM asks for), or use an issued one",
            )
        elif not found.covers(host):
            yield Check(
                name,
                "fail",
                f"{where}: the certificate covers {', '.join(found.names)}, not {host}",
                f"Use a certificate for {host} (or *.{host.partition('.')[2]})",
            )
        else:
            yield Check(name, "pass", f"{where}: {host} is covered by an issued certificate")


def _state_backend(aws: Aws, env: str, stacks_dir: Path) -> Iterator[Check]:
    choice = choose_backend(env, stacks_dir)
    name = "state backend"
    if choice.url is None:
        yield Check(
            name,
            "fail",
            f"no state backend: `fermion bootstrap {env}` has not run here, PULUMI_BACKEND_URL "
            "is not set and `pulumi login` was never run",
            f"Run `fermion bootstrap {env}`",
        )
        return
    if not choice.url.startswith("s3://"):
        yield Check(name, "pass", f"{choice.describe()}; doctor checks only S3 backends")
        return
    bucket = choice.url.removeprefix("s3://").split("/")[0].split("?")[0]
    state = aws.bucket_state(bucket)
    fix = (
        f"Run `fermion bootstrap {env}`"
        if choice.source == "fermion bootstrap"
        else f"Check {choice.source}"
    )
    if state == "free":
        yield Check(name, "fail", f"{choice.describe()}: the bucket {bucket} does not exist", fix)
        return
    if state == "elsewhere":
        yield Check(
            name, "fail", f"{choice.describe()}: these credentials may not read {bucket}", fix
        )
        return
    record = choice.record
    if choice.source == "fermion bootstrap" and record is not None:
        key = aws.key_state(record.kms_alias)
        if key != "Enabled":
            yield Check(
                name,
                "fail",
                f"{choice.describe()}: the secrets key {record.kms_alias} is "
                f"{key if key is not None else 'missing'}",
                fix,
            )
            return
    yield Check(name, "pass", f"{choice.describe()} is reachable")


def _names(zones: list[str]) -> str:
    return ", ".join(zones) if zones else "none"
