"""The questions fermion asks AWS before a deploy, answered through boto3.

`fermion doctor` checks an environment against these answers, and `fermion plan --aws` answers the
stack program's lookups (zones, instance-type offerings, add-on versions) with them instead of
offline assumptions. Both go through one `Aws`: a boto3 session in the environment's region, with
a client per service, made once. Failures of credentials, network and permission become fermion's
own errors (`fermion.stacks.aws_errors`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fermion.environments.errors import FermionError
from fermion.stacks.aws_errors import aws_errors, error_code

__all__ = [
    "Aws",
    "BucketState",
    "ClusterVersion",
    "Identity",
    "LookupUnavailableError",
    "Quota",
    "RegionStatus",
    "Zone",
    "connect",
]

# What an endpoint answers for an operation it does not implement (moto's server says 404).
_UNAVAILABLE_CODES = frozenset(
    {"404", "UnknownOperationException", "InvalidAction", "NotImplemented", "UnsupportedOperation"}
)

BucketState = Literal["free", "ours", "elsewhere"]


class LookupUnavailableError(FermionError):
    """An API fermion would ask is not there: an older botocore, or an endpoint without it."""

    def __init__(self, operation: str, why: str) -> None:
        self.operation = operation
        self.why = why
        super().__init__(
            f"{operation} could not be asked ({why}). Upgrade boto3 and botocore "
            "(pip install -U boto3), or check the answer by hand in the AWS console."
        )


@dataclass(frozen=True)
class Identity:
    """Who the credentials are: the account and the caller's ARN."""

    account: str
    arn: str


@dataclass(frozen=True)
class RegionStatus:
    """A region as the account sees it. `opt_in` is None for a region AWS does not know."""

    name: str
    opt_in: str | None

    @property
    def enabled(self) -> bool:
        return self.opt_in in ("opt-in-not-required", "opted-in")


@dataclass(frozen=True)
class Zone:
    """An availability zone: its name in this account, and the id that is the same in all."""

    name: str
    id: str


@dataclass(frozen=True)
class Quota:
    """A Service Quotas value: vCPUs of running instances, for one family of instance types."""

    code: str
    name: str
    value: float
    applied: bool  # False: the account has no value of its own, and AWS's default applies


@dataclass(frozen=True)
class Certificate:
    """An ACM certificate: its status (ISSUED, PENDING_VALIDATION, EXPIRED...) and the names
    it covers (its domain name and subject alternative names)."""

    status: str
    names: tuple[str, ...]

    def covers(self, hostname: str) -> bool:
        """Whether TLS for `hostname` can use it: a name, or a wildcard for one label."""
        for name in self.names:
            if name == hostname:
                return True
            if name.startswith("*.") and hostname.partition(".")[2] == name[2:]:
                return True
        return False


@dataclass(frozen=True)
class ClusterVersion:
    """An EKS Kubernetes version and where it stands in its support life."""

    version: str
    status: str  # STANDARD_SUPPORT, EXTENDED_SUPPORT or UNSUPPORTED
    end_of_standard_support: str | None
    end_of_extended_support: str | None


class Aws:
    """boto3 in one region: a client per service, and the lookups fermion needs.

    `clients` are clients made already, by service name; the tests answer the few calls that
    moto does not implement with a client under botocore's Stubber this way.
    """

    def __init__(
        self, region: str, session: Any = None, clients: Mapping[str, Any] | None = None
    ) -> None:
        self.region = region
        self._session = session
        self._clients: dict[str, Any] = {} if clients is None else dict(clients)

    def client(self, service: str) -> Any:
        """The boto3 client of `service` in this region, made on first use."""
        if service not in self._clients:
            if self._session is None:
                import boto3

                self._session = boto3.session.Session()
            with aws_errors(self.region):
                self._clients[service] = self._session.client(service, region_name=self.region)
        return self._clients[service]

    def identity(self) -> Identity:
        """The caller: STS get_caller_identity, which needs no permission at all."""
        with aws_errors(self.region):
            answer = self.client("sts").get_caller_identity()
        return Identity(account=str(answer["Account"]), arn=str(answer["Arn"]))

    def region_status(self) -> RegionStatus:
        """Whether the account may use this region (opted in, or no opt-in needed)."""
        from botocore.exceptions import ClientError

        ec2 = self.client("ec2")
        try:
            with aws_errors(self.region):
                regions = ec2.describe_regions(RegionNames=[self.region], AllRegions=True)
        except ClientError as exc:
            if error_code(exc) in ("InvalidParameterValue", "InvalidRegion"):
                return RegionStatus(self.region, None)
            raise
        for region in regions.get("Regions", []):
            if region.get("RegionName") == self.region:
                return RegionStatus(self.region, str(region.get("OptInStatus", "")))
        return RegionStatus(self.region, None)

    def zones(self) -> list[str]:
        """The names of the region's available zones that need no opt-in, in name order."""
        return [zone.name for zone in self.availability_zones()]

    def availability_zones(self) -> list[Zone]:
        """The region's available zones that need no opt-in, in name order: the zones a new
        network picks from (local and Wavelength zones lack services EKS needs)."""
        with aws_errors(self.region):
            answer = self.client("ec2").describe_availability_zones(
                Filters=[
                    {"Name": "opt-in-status", "Values": ["opt-in-not-required"]},
                    {"Name": "state", "Values": ["available"]},
                ]
            )
        zones = [
            Zone(name=str(z["ZoneName"]), id=str(z.get("ZoneId", z["ZoneName"])))
            for z in answer.get("AvailabilityZones", [])
        ]
        return sorted(zones, key=lambda zone: zone.name)

    def offering_zones(self, instance_types: Iterable[str]) -> dict[str, list[str]]:
        """For each instance type, the zones of the region that sell it (none: an empty list)."""
        wanted = sorted(set(instance_types))
        found: dict[str, set[str]] = {name: set() for name in wanted}
        if not wanted:
            return {}
        paginator = self.client("ec2").get_paginator("describe_instance_type_offerings")
        with aws_errors(self.region):
            for page in paginator.paginate(
                LocationType="availability-zone",
                Filters=[{"Name": "instance-type", "Values": wanted}],
            ):
                for offer in page.get("InstanceTypeOfferings", []):
                    found.setdefault(str(offer["InstanceType"]), set()).add(str(offer["Location"]))
        return {name: sorted(zones) for name, zones in found.items()}

    def quota(self, code: str) -> Quota:
        """An EC2 quota by code: the account's own value, else AWS's default."""
        from botocore.exceptions import ClientError

        quotas = self.client("service-quotas")
        try:
            with aws_errors(self.region):
                answer = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)
            applied = True
        except ClientError as exc:
            if error_code(exc) != "NoSuchResourceException":
                raise self._unavailable(exc, "service-quotas GetServiceQuota") from None
            # An account that never asked for a change may have no value of its own.
            try:
                with aws_errors(self.region):
                    answer = quotas.get_aws_default_service_quota(ServiceCode="ec2", QuotaCode=code)
            except ClientError as inner:
                raise self._unavailable(inner, "service-quotas GetAWSDefaultServiceQuota") from None
            applied = False
        quota = answer["Quota"]
        return Quota(
            code=code,
            name=str(quota.get("QuotaName", code)),
            value=float(quota["Value"]),
            applied=applied,
        )

    def cluster_version(self, version: str) -> ClusterVersion | None:
        """EKS's support status of a Kubernetes version; None when EKS does not know it."""
        from botocore.exceptions import ClientError

        eks = self.client("eks")
        if not hasattr(eks, "describe_cluster_versions"):
            raise LookupUnavailableError(
                "eks DescribeClusterVersions", "this botocore is older than the API"
            )
        try:
            with aws_errors(self.region):
                answer = eks.describe_cluster_versions(clusterVersions=[version], includeAll=True)
        except ClientError as exc:
            raise self._unavailable(exc, "eks DescribeClusterVersions") from None
        for item in answer.get("clusterVersions", []):
            if item.get("clusterVersion") == version:
                status = item.get("versionStatus") or str(item.get("status", "")).upper()
                return ClusterVersion(
                    version=version,
                    status=str(status).replace("-", "_"),
                    end_of_standard_support=_date(item.get("endOfStandardSupportDate")),
                    end_of_extended_support=_date(item.get("endOfExtendedSupportDate")),
                )
        return None

    def addon_version(self, addon: str, kubernetes_version: str) -> str | None:
        """The version of a managed add-on that EKS installs by default on `kubernetes_version`
        (what Pulumi's getAddonVersion answers); None when the add-on has none for it."""
        from botocore.exceptions import ClientError

        paginator = self.client("eks").get_paginator("describe_addon_versions")
        versions: list[dict[str, Any]] = []
        try:
            with aws_errors(self.region):
                for page in paginator.paginate(
                    addonName=addon, kubernetesVersion=kubernetes_version
                ):
                    for item in page.get("addons", []):
                        versions.extend(item.get("addonVersions", []))
        except ClientError as exc:
            raise self._unavailable(exc, "eks DescribeAddonVersions") from None
        for candidate in versions:
            for compatible in candidate.get("compatibilities", []):
                if compatible.get("clusterVersion") == kubernetes_version and compatible.get(
                    "defaultVersion"
                ):
                    return str(candidate["addonVersion"])
        # No default marked: EKS lists the newest first.
        return str(versions[0]["addonVersion"]) if versions else None

    def parameter(self, name: str) -> str | None:
        """An SSM parameter's value (such as a public AMI id), or None when it does not exist."""
        from botocore.exceptions import ClientError

        try:
            with aws_errors(self.region):
                answer = self.client("ssm").get_parameter(Name=name)
        except ClientError as exc:
            if error_code(exc) == "ParameterNotFound":
                return None
            raise
        return str(answer["Parameter"]["Value"])

    def bucket_state(self, bucket: str, owner: str | None = None) -> BucketState:
        """Whether an S3 bucket name is free, reachable by the caller ("ours"), or another's.
        With `owner`, a bucket that account does not own counts as another's."""
        from botocore.exceptions import ClientError

        head: dict[str, str] = {"Bucket": bucket}
        if owner is not None:
            head["ExpectedBucketOwner"] = owner
        try:
            with aws_errors(self.region):
                self.client("s3").head_bucket(**head)
        except ClientError as exc:
            code = error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                return "free"
            if code == "403":
                # HEAD answers carry no error body: 403 is all S3 says of another's bucket.
                return "elsewhere"
            raise
        return "ours"

    def certificate(self, arn: str) -> Certificate | None:
        """An ACM certificate of this region, or None when there is no such certificate."""
        from botocore.exceptions import ClientError

        try:
            with aws_errors(self.region):
                found = self.client("acm").describe_certificate(CertificateArn=arn)["Certificate"]
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        names = [str(found.get("DomainName", ""))]
        names += [str(n) for n in found.get("SubjectAlternativeNames", [])]
        return Certificate(str(found.get("Status")), tuple(dict.fromkeys(n for n in names if n)))

    def key_state(self, key: str) -> str | None:
        """A KMS key's state (Enabled, Disabled, PendingDeletion...), by id, ARN or alias;
        None when there is no such key."""
        from botocore.exceptions import ClientError

        try:
            with aws_errors(self.region):
                meta = self.client("kms").describe_key(KeyId=key)["KeyMetadata"]
        except ClientError as exc:
            if error_code(exc) == "NotFoundException":
                return None
            raise
        return str(meta.get("KeyState"))

    def _unavailable(self, exc: Exception, operation: str) -> Exception:
        if error_code(exc) in _UNAVAILABLE_CODES:
            return LookupUnavailableError(operation, f"the endpoint answered {error_code(exc)}")
        return exc


def connect(region: str) -> Aws:
    """An `Aws` for `region` with the default credential chain (env, profile, SSO, IMDS)."""
    return Aws(region)


def _date(value: Any) -> str | None:
    if value is None:
        return None
    iso = getattr(value, "date", None)
    return str(iso().isoformat()) if callable(iso) else str(value)
