"""`fermion bootstrap ENV`: the state backend in the user's own account, made through boto3.

It makes, or checks, two things in the environment's region:
- a KMS key (rotation on, under an alias) that Pulumi uses as the stacks' secrets provider;
- an S3 bucket for Pulumi's state: bucket-owner-enforced, every public access blocked,
  versioned, encrypted by default with that key, and refusing requests that are not TLS.
Both carry the tag `fermion.dev/state=<account>`, by which a later run knows it made them. Each
setting is read first and written only when it differs, so a second run changes nothing. Then
the pair is recorded for the environment (`fermion.stacks.backend`).

A bucket or key that exists without the tag was made by someone else: bootstrap refuses it unless
`adopt` is given, and then tags it and applies the same settings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fermion.environments.errors import FermionError
from fermion.stacks.aws_errors import aws_errors, error_code
from fermion.stacks.aws_lookups import Aws
from fermion.stacks.backend import StateBackend, backend_file, load_backend, save_backend

__all__ = [
    "STATE_TAG",
    "BootstrapResult",
    "NotOursError",
    "StateBucketTakenError",
    "StateKeyUnusableError",
    "Step",
    "bootstrap",
    "default_bucket_name",
    "key_alias",
]

STATE_TAG = "fermion.dev/state"
TLS_SID = "DenyInsecureTransport"


class NotOursError(FermionError):
    """A bucket or key exists under the name bootstrap would use, but fermion did not make it."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        other = "--bucket NAME to use another bucket" if kind == "bucket" else "--bucket NAME"
        super().__init__(
            f"the {kind} {name} exists but has no `{STATE_TAG}` tag, so fermion did not make it. "
            f"Pass --adopt to take it on as the state {kind} (fermion tags it and applies its "
            f"settings), or pass {other} (the key's alias follows the bucket's name)."
        )


class StateBucketTakenError(FermionError):
    """The bucket name belongs to another account, or lives in another region."""

    def __init__(self, bucket: str, problem: str) -> None:
        self.bucket = bucket
        super().__init__(
            f"the state bucket {bucket} {problem}. Pass --bucket NAME with a name of your own."
        )


class StateKeyUnusableError(FermionError):
    """The KMS key under the state alias cannot encrypt: disabled, pending deletion, or not a
    symmetric encryption key."""

    def __init__(self, alias: str, key_id: str, problem: str, fix: str) -> None:
        self.alias = alias
        super().__init__(f"the KMS key {key_id} ({alias}) {problem}. {fix}")


Action = Literal["created", "changed", "unchanged"]


@dataclass(frozen=True)
class Step:
    """One thing bootstrap looked at, and what it did to it."""

    subject: str
    action: Action
    detail: str


@dataclass(frozen=True)
class BootstrapResult:
    """What bootstrap made or found, and where it recorded it."""

    backend: StateBackend
    record: Path
    steps: tuple[Step, ...]

    @property
    def changed(self) -> bool:
        """Whether this run changed anything, in AWS or in the record."""
        return any(step.action != "unchanged" for step in self.steps)

    def to_json(self) -> dict[str, Any]:
        """The `fermion bootstrap --json` document."""
        return {
            "environment": self.backend.environment,
            "backend": self.backend.to_json(),
            "record": str(self.record),
            "changed": self.changed,
            "steps": [
                {"subject": s.subject, "action": s.action, "detail": s.detail} for s in self.steps
            ],
        }


def default_bucket_name(account: str, region: str) -> str:
    """The state bucket's name: one per account and region, the same on every run."""
    return f"fermion-state-{account}-{region}"


def key_alias(bucket: str) -> str:
    """The alias of the bucket's KMS key: it follows the bucket's name."""
    return "alias/" + bucket.replace(".", "-")


def bootstrap(
    env: str,
    region: str,
    stacks_dir: Path,
    *,
    bucket: str | None = None,
    adopt: bool = False,
    aws: Aws | None = None,
) -> BootstrapResult:
    """Make or check the state bucket and key of `env` in `region`, and record them.

    Everything is read before anything is written: a refusal leaves the account as it was.
    """
    aws = Aws(region) if aws is None else aws
    account = aws.identity().account
    name = default_bucket_name(account, region) if bucket is None else bucket
    alias = key_alias(name)
    steps: list[Step] = []
    with aws_errors(region, every=True):
        found = _look(aws, account, name, alias, adopt)
        key_id, key_arn = _key(aws, account, alias, found, steps)
        _bucket(aws, account, name, found, steps)
        _bucket_settings(aws, name, key_arn, steps)
    backend = StateBackend(
        environment=env,
        account=account,
        region=region,
        bucket=name,
        kms_key_id=key_id,
        kms_alias=alias,
    )
    if load_backend(env, stacks_dir) == backend:
        path = backend_file(stacks_dir)
        steps.append(Step(f"record of {env}", "unchanged", str(path)))
    else:
        path = save_backend(backend, stacks_dir)
        steps.append(Step(f"record of {env}", "changed", str(path)))
    return BootstrapResult(backend=backend, record=path, steps=tuple(steps))


@dataclass(frozen=True)
class _Found:
    """What already exists under the names bootstrap uses, and whether fermion made it."""

    key: dict[str, Any] | None  # the key's metadata; None when the alias is free
    key_ours: bool
    bucket_exists: bool
    bucket_tags: tuple[dict[str, str], ...]
    bucket_ours: bool


def _look(aws: Aws, account: str, name: str, alias: str, adopt: bool) -> _Found:
    """Read the key and the bucket, and refuse what fermion did not make unless `adopt`."""
    from botocore.exceptions import ClientError

    kms = aws.client("kms")
    key_ours = False
    try:
        key: dict[str, Any] | None = kms.describe_key(KeyId=alias)["KeyMetadata"]
    except ClientError as exc:
        if error_code(exc) != "NotFoundException":
            raise
        key = None
    if key is not None:
        _usable(alias, key)
        tags = kms.list_resource_tags(KeyId=key["KeyId"]).get("Tags", [])
        key_ours = any(t["TagKey"] == STATE_TAG and t["TagValue"] == account for t in tags)
        if not key_ours and not adopt:
            raise NotOursError("KMS key", f"{key['KeyId']} ({alias})")

    state = aws.bucket_state(name)
    if state == "elsewhere":
        raise StateBucketTakenError(name, "belongs to another AWS account")
    if state == "free":
        return _Found(key, key_ours, False, (), False)
    s3 = aws.client("s3")
    location = s3.get_bucket_location(Bucket=name).get("LocationConstraint") or "us-east-1"
    if location != aws.region:
        raise StateBucketTakenError(
            name, f"is in {location}, not in the environment's {aws.region}"
        )
    found = _get(s3.get_bucket_tagging, ("NoSuchTagSet",), Bucket=name)
    bucket_tags = () if found is None else tuple(found.get("TagSet", []))
    bucket_ours = any(t["Key"] == STATE_TAG and t["Value"] == account for t in bucket_tags)
    if not bucket_ours and not adopt:
        raise NotOursError("bucket", name)
    return _Found(key, key_ours, True, bucket_tags, bucket_ours)


def _key(aws: Aws, account: str, alias: str, found: _Found, steps: list[Step]) -> tuple[str, str]:
    """The key under `alias`, made when there is none, with rotation on; its id and ARN."""
    kms = aws.client("kms")
    tag = [{"TagKey": STATE_TAG, "TagValue": account}]
    meta = found.key
    if meta is None:
        meta = kms.create_key(
            Description=f"fermion: Pulumi secrets of the stacks in {account}/{aws.region}",
            KeyUsage="ENCRYPT_DECRYPT",
            KeySpec="SYMMETRIC_DEFAULT",
            Tags=tag,
        )["KeyMetadata"]
        kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
        steps.append(Step(f"KMS key {alias}", "created", str(meta["Arn"])))
    elif found.key_ours:
        steps.append(Step(f"KMS key {alias}", "unchanged", str(meta["Arn"])))
    else:
        kms.tag_resource(KeyId=meta["KeyId"], Tags=tag)
        steps.append(Step(f"KMS key {alias}", "changed", f"adopted and tagged {STATE_TAG}"))
    key_id = str(meta["KeyId"])
    if kms.get_key_rotation_status(KeyId=key_id).get("KeyRotationEnabled"):
        steps.append(Step("key rotation", "unchanged", "on"))
    else:
        kms.enable_key_rotation(KeyId=key_id)
        steps.append(Step("key rotation", "changed", "turned on (yearly)"))
    return key_id, str(meta["Arn"])


def _usable(alias: str, meta: dict[str, Any]) -> None:
    key_id = str(meta["KeyId"])
    state = meta.get("KeyState")
    if state == "PendingDeletion":
        raise StateKeyUnusableError(
            alias,
            key_id,
            "is pending deletion",
            f"Cancel it with `aws kms cancel-key-deletion --key-id {key_id}` and "
            f"`aws kms enable-key --key-id {key_id}`, or pass --bucket NAME for a new pair",
        )
    if state != "Enabled":
        raise StateKeyUnusableError(
            alias, key_id, f"is {state}", f"Enable it with `aws kms enable-key --key-id {key_id}`"
        )
    if meta.get("KeySpec", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT" or (
        meta.get("KeyUsage", "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT"
    ):
        raise StateKeyUnusableError(
            alias,
            key_id,
            "is not a symmetric encryption key",
            f"Move the alias with `aws kms delete-alias --alias-name {alias}`, or pass "
            "--bucket NAME for a new pair",
        )


def _bucket(aws: Aws, account: str, name: str, found: _Found, steps: list[Step]) -> None:
    """The bucket, made when the name is free, and tagged as fermion's."""
    from botocore.exceptions import ClientError

    s3 = aws.client("s3")
    tag = {"Key": STATE_TAG, "Value": account}
    where = f"in {aws.region}, tagged {STATE_TAG}"
    if found.bucket_ours:
        steps.append(Step(f"bucket {name}", "unchanged", where))
        return
    if found.bucket_exists:
        kept = [t for t in found.bucket_tags if t["Key"] != STATE_TAG]
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [*kept, tag]})
        steps.append(Step(f"bucket {name}", "changed", f"adopted and tagged {STATE_TAG}"))
        return
    create: dict[str, Any] = {"Bucket": name, "ObjectOwnership": "BucketOwnerEnforced"}
    if aws.region != "us-east-1":
        create["CreateBucketConfiguration"] = {"LocationConstraint": aws.region}
    try:
        s3.create_bucket(**create)
    except ClientError as exc:
        if error_code(exc) == "BucketAlreadyExists":
            raise StateBucketTakenError(name, "belongs to another AWS account") from None
        raise
    # Tagged at once, so a run stopped halfway still knows the bucket as its own.
    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [tag]})
    steps.append(Step(f"bucket {name}", "created", where))


def _bucket_settings(aws: Aws, name: str, key_arn: str, steps: list[Step]) -> None:
    s3 = aws.client("s3")

    ownership = _get(
        s3.get_bucket_ownership_controls, ("OwnershipControlsNotFoundError",), Bucket=name
    )
    rules = [] if ownership is None else ownership["OwnershipControls"].get("Rules", [])
    if [r.get("ObjectOwnership") for r in rules] == ["BucketOwnerEnforced"]:
        steps.append(Step("object ownership", "unchanged", "bucket owner enforced (no ACLs)"))
    else:
        s3.put_bucket_ownership_controls(
            Bucket=name,
            OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        )
        steps.append(Step("object ownership", "changed", "bucket owner enforced (no ACLs)"))

    flags = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
    block = _get(s3.get_public_access_block, ("NoSuchPublicAccessBlockConfiguration",), Bucket=name)
    current = {} if block is None else block["PublicAccessBlockConfiguration"]
    if all(current.get(flag) for flag in flags):
        steps.append(Step("public access", "unchanged", "all blocked"))
    else:
        s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=dict.fromkeys(flags, True)
        )
        steps.append(Step("public access", "changed", "all blocked"))

    if s3.get_bucket_versioning(Bucket=name).get("Status") == "Enabled":
        steps.append(Step("versioning", "unchanged", "on"))
    else:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        steps.append(Step("versioning", "changed", "on"))

    _encryption(s3, name, key_arn, steps)
    _tls_only(s3, name, steps)


def _encryption(s3: Any, name: str, key_arn: str, steps: list[Step]) -> None:
    found = _get(
        s3.get_bucket_encryption, ("ServerSideEncryptionConfigurationNotFoundError",), Bucket=name
    )
    rules = [] if found is None else found["ServerSideEncryptionConfiguration"].get("Rules", [])
    default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if len(rules) == 1 else {}
    detail = f"SSE-KMS with {key_arn}, bucket key on"
    if (
        default.get("SSEAlgorithm") == "aws:kms"
        and default.get("KMSMasterKeyID") == key_arn
        and rules[0].get("BucketKeyEnabled")
    ):
        steps.append(Step("default encryption", "unchanged", detail))
        return
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": key_arn,
                    },
                    # One data key per bucket rather than per object: far fewer KMS requests.
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    steps.append(Step("default encryption", "changed", detail))


def _tls_only(s3: Any, name: str, steps: list[Step]) -> None:
    wanted = {
        "Sid": TLS_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    found = _get(s3.get_bucket_policy, ("NoSuchBucketPolicy",), Bucket=name)
    policy: dict[str, Any] = (
        {"Version": "2012-10-17", "Statement": []} if found is None else json.loads(found["Policy"])
    )
    given = policy.get("Statement", [])
    statements: list[dict[str, Any]] = [given] if isinstance(given, dict) else list(given)
    if wanted in statements:
        steps.append(Step("bucket policy", "unchanged", "denies requests without TLS"))
        return
    # Any other statement (an adopted bucket's) stays; only fermion's own is replaced.
    policy["Statement"] = [s for s in statements if s.get("Sid") != TLS_SID] + [wanted]
    s3.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
    steps.append(Step("bucket policy", "changed", "denies requests without TLS"))


def _get(call: Callable[..., Any], missing: tuple[str, ...], **kwargs: Any) -> Any:
    """A read whose "not configured" error means None."""
    from botocore.exceptions import ClientError

    try:
        return call(**kwargs)
    except ClientError as exc:
        if error_code(exc) in missing:
            return None
        raise
