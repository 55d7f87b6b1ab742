"""Rules for S3 buckets and ECR repositories: nothing public, encrypted with KMS, versioned,
TLS only, images scanned and never overwritten."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from fermion.policies.findings import MANDATORY, Resource, Rule
from fermion.policies.links import as_list, attached, policy_document, statements

__all__ = ["STORAGE_RULES"]

BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
PUBLIC_ACCESS_BLOCKS = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",)
ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
VERSIONING = (
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketVersioningV2:BucketVersioningV2",
)
BUCKET_POLICIES = ("aws:s3/bucketPolicy:BucketPolicy",)
LOGGING = ("aws:s3/bucketLogging:BucketLogging", "aws:s3/bucketLoggingV2:BucketLoggingV2")
REPOSITORIES = ("aws:ecr/repository:Repository",)
_BLOCKS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
_KMS = ("aws:kms", "aws:kms:dsse")


def _for(bucket: Resource, stack: Sequence[Resource], types: tuple[str, ...]) -> list[Resource]:
    return attached(bucket, stack, types, "bucket", "bucket", "id")


def is_access_log_target(bucket: Resource, stack: Sequence[Resource]) -> bool:
    """Whether another bucket's server access logs go to `bucket`."""
    return bool(attached(bucket, stack, LOGGING, "targetBucket", "bucket", "id"))


def public_access_blocked(bucket: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """Every bucket has a public access block with all four settings on."""
    blocks = _for(bucket, stack, PUBLIC_ACCESS_BLOCKS)
    if not blocks:
        yield (
            "no public access block: add an aws.s3.BucketPublicAccessBlock with all four "
            "settings true"
        )
        return
    off = sorted({key for block in blocks for key in _BLOCKS if block.get(key) is not True})
    if off:
        yield f"public access block leaves {', '.join(off)} off: set each to true"


def sse_kms(bucket: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """Objects are encrypted with a KMS key by default. A bucket that receives server access
    logs may use SSE-S3 instead: S3 cannot deliver logs to an SSE-KMS bucket."""
    inline = bucket.get(
        "serverSideEncryptionConfiguration",
        "rule",
        "applyServerSideEncryptionByDefault",
        "sseAlgorithm",
    )
    algorithms = [inline] if inline is not None else []
    for config in _for(bucket, stack, ENCRYPTION):
        for rule in as_list(config.get("rules")):
            default = (
                rule.get("applyServerSideEncryptionByDefault") if isinstance(rule, dict) else None
            )
            if isinstance(default, dict):
                algorithms.append(default.get("sseAlgorithm"))
    if any(a in _KMS for a in algorithms):
        return
    if "AES256" in algorithms and is_access_log_target(bucket, stack):
        return
    yield (
        "objects are not encrypted with KMS by default: add a "
        "BucketServerSideEncryptionConfiguration with sse_algorithm 'aws:kms' and a key"
    )


def versioning(bucket: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """Versioning is on, so an overwritten or deleted model can be restored. Access-log buckets
    are exempt: their objects are written once and expire."""
    if bucket.get("versioning", "enabled") is True or is_access_log_target(bucket, stack):
        return
    states = [v.get("versioningConfiguration", "status") for v in _for(bucket, stack, VERSIONING)]
    if "Enabled" not in states:
        yield (
            "versioning is off: add an aws.s3.BucketVersioning with status 'Enabled' "
            "(storage.versioning: true in an environment)"
        )


def tls_only(bucket: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """The bucket policy denies every request not made over TLS. A policy that only `up`
    will know is checked there, by the pack."""
    policies = _for(bucket, stack, BUCKET_POLICIES)
    fix = (
        "add a bucket policy statement that denies s3:* to every principal when "
        "aws:SecureTransport is false"
    )
    if not policies:
        yield f"no bucket policy: {fix}"
        return
    documents = [policy_document(p.get("policy")) for p in policies]
    if any(d is None for d in documents):
        return
    if not any(_denies_plain_http(d) for d in documents if d is not None):
        yield f"the bucket policy does not deny plain HTTP: {fix}"


def _denies_plain_http(document: dict[str, object]) -> bool:
    for statement in statements(document):
        condition = statement.get("Condition")
        flag = (
            condition.get("Bool", {}).get("aws:SecureTransport")
            if isinstance(condition, dict)
            else None
        )
        if statement.get("Effect") == "Deny" and str(flag).lower() == "false":
            return True
    return False


def ecr_scan_on_push(repository: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """Every pushed image is scanned for vulnerabilities."""
    if repository.get("imageScanningConfiguration", "scanOnPush") is not True:
        yield (
            "images are not scanned on push: set image_scanning_configuration.scan_on_push "
            "(registry.scan_on_push: true in an environment)"
        )


def ecr_immutable_tags(repository: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """A pushed tag can never be moved to another image."""
    if repository.get("imageTagMutability") not in ("IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION"):
        yield (
            "tags are mutable: set image_tag_mutability 'IMMUTABLE' "
            "(registry.immutable_tags: true in an environment)"
        )


STORAGE_RULES = (
    Rule(
        "s3-public-access-blocked",
        MANDATORY,
        "Buckets block all public access.",
        BUCKETS,
        public_access_blocked,
    ),
    Rule(
        "s3-sse-kms",
        MANDATORY,
        "Buckets encrypt objects with KMS by default (SSE-S3 for access-log buckets).",
        BUCKETS,
        sse_kms,
    ),
    Rule(
        "s3-versioning",
        MANDATORY,
        "Buckets keep versions (access-log buckets exempt).",
        BUCKETS,
        versioning,
    ),
    Rule(
        "s3-tls-only",
        MANDATORY,
        "Bucket policies deny requests not made over TLS.",
        BUCKETS,
        tls_only,
    ),
    Rule(
        "ecr-scan-on-push",
        MANDATORY,
        "Repositories scan images on push.",
        REPOSITORIES,
        ecr_scan_on_push,
    ),
    Rule(
        "ecr-immutable-tags",
        MANDATORY,
        "Repositories keep tags immutable.",
        REPOSITORIES,
        ecr_immutable_tags,
    ),
)
