"""ModelStore: the private, encrypted S3 bucket that holds model artifacts."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from fermion.components.kms import rotating_key
from fermion.environments.errors import FermionError

# An RFC 1123 label: 1 to 63 lowercase letters, digits and hyphens, not at either end.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

# S3 caps `bucket_prefix` at 37 characters; the logs bucket's prefix is cut to fit.
_BUCKET_PREFIX_MAX = 37
_LOGS_SUFFIX = "-logs-"


class InvalidServiceNameError(FermionError):
    """A service name that cannot be a prefix in the model store."""

    def __init__(self, service: str) -> None:
        self.service = service
        super().__init__(
            f"invalid service name {service!r}: models live at s3://<bucket>/<service>/<version>/, "
            "so a service name must be a DNS label. Use 1 to 63 lowercase letters, digits and "
            "'-', beginning and ending with a letter or digit (for example 'classifier')."
        )


@dataclass(frozen=True)
class ModelStoreArgs:
    """How the model bucket is set up.

    `bucket_name` names the bucket; when it is None, AWS picks a unique name that begins with
    `bucket_prefix`. Noncurrent versions expire after `noncurrent_version_days`, and parts of
    uploads left unfinished are removed after `abort_multipart_days`. With `access_logging`,
    S3 server access logs go to a second private bucket and expire after `access_log_days`.
    """

    bucket_name: str | None = None
    bucket_prefix: str = "fermion-models-"
    versioning: bool = True
    noncurrent_version_days: int = 30
    abort_multipart_days: int = 7
    access_logging: bool = False
    access_log_days: int = 90
    force_destroy: bool = False
    key_deletion_window_days: int = 30
    tags: Mapping[str, str] = field(default_factory=dict)


class ModelStore(pulumi.ComponentResource):
    """An S3 bucket for model artifacts, laid out as `s3://<bucket>/<service>/<version>/`.

    The bucket is private (public access blocked, ACLs disabled), encrypted with its own KMS
    key, versioned, reachable over TLS only, and optionally logged. Outputs: `bucket_name`,
    `bucket_arn` and `kms_key_arn`; `read_only_policy(service)` gives a service's pods read
    access to their own prefix and nothing else.
    """

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fermion:index:ModelStore", name, None, opts)
        tags = dict(args.tags)

        self.key = rotating_key(
            name,
            f"Encrypts the model artifacts in fermion's model store {name}",
            args.key_deletion_window_days,
            tags,
            self,
        )
        auto_named = args.bucket_name is None
        self.bucket = aws.s3.Bucket(
            name,
            bucket=args.bucket_name,
            bucket_prefix=args.bucket_prefix if auto_named else None,
            force_destroy=args.force_destroy,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Alias names allow letters, digits, '/', '_' and '-' but no dots. A bucket name is
        # unique, so an alias named after it is too; an auto-named bucket's key gets a unique
        # alias that begins with the same prefix.
        base = args.bucket_prefix.rstrip("-.") if args.bucket_name is None else args.bucket_name
        alias = f"alias/fermion/{base.replace('.', '-')}"
        self.key_alias = aws.kms.Alias(
            f"{name}-key",
            name=None if auto_named else alias,
            name_prefix=f"{alias}-" if auto_named else None,
            target_key_id=self.key.key_id,
            opts=pulumi.ResourceOptions(parent=self),
        )

        self.public_access_block = _block_public_access(name, self.bucket, self)
        _enforce_bucket_owner(name, self.bucket, self)
        self.encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            name,
            bucket=self.bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": self.key.arn,
                    },
                    # One data key per bucket instead of one KMS call per object: model files
                    # are read often, and KMS requests are billed and rate-limited.
                    "bucket_key_enabled": True,
                }
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )

        lifecycle_depends: list[pulumi.Resource] = []
        self.versioning: aws.s3.BucketVersioning | None = None
        if args.versioning:
            # Without this resource a new bucket stays unversioned; removing it later suspends
            # versioning, which keeps the versions already stored.
            self.versioning = aws.s3.BucketVersioning(
                name,
                bucket=self.bucket.id,
                versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                    status="Enabled"
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            lifecycle_depends.append(self.versioning)
        # The noncurrent rule stays even with versioning off: versions kept from a time when it
        # was on still expire.
        self.lifecycle = aws.s3.BucketLifecycleConfiguration(
            name,
            bucket=self.bucket.id,
            rules=[
                {
                    "id": "expire-noncurrent-versions",
                    "status": "Enabled",
                    "filter": {},
                    "noncurrent_version_expiration": {
                        "noncurrent_days": args.noncurrent_version_days
                    },
                    # Once a deleted object's old versions expire, its lone delete marker
                    # would linger and slow down listings.
                    "expiration": {"expired_object_delete_marker": True},
                },
                {
                    "id": "abort-incomplete-multipart-uploads",
                    "status": "Enabled",
                    "filter": {},
                    "abort_incomplete_multipart_upload": {
                        "days_after_initiation": args.abort_multipart_days
                    },
                },
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=lifecycle_depends),
        )
        self.policy = aws.s3.BucketPolicy(
            name,
            bucket=self.bucket.id,
            policy=pulumi.Output.json_dumps(
                {"Version": "2012-10-17", "Statement": [_deny_insecure_transport(self.bucket)]}
            ),
            # S3 rejects a policy written while the public access block is being changed.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.public_access_block]),
        )

        self.log_bucket: aws.s3.Bucket | None = None
        self.logging: aws.s3.BucketLogging | None = None
        if args.access_logging:
            self.log_bucket = self._access_logs(name, args, tags)

        self.bucket_name = self.bucket.bucket
        self.bucket_arn = self.bucket.arn
        self.kms_key_arn = self.key.arn
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "bucket_arn": self.bucket_arn,
                "kms_key_arn": self.kms_key_arn,
            }
        )

    def read_only_policy(self, service: str) -> pulumi.Output[str]:
        """An IAM policy (JSON) that reads one service's models and nothing else.

        It allows s3:GetObject under `<service>/`, listing only that prefix, and kms:Decrypt
        on the store's key, which reading an SSE-KMS object needs.
        """
        if not _DNS_LABEL.match(service):
            raise InvalidServiceNameError(service)
        return pulumi.Output.all(self.bucket_arn, self.kms_key_arn).apply(
            lambda arns: s3_read_policy(arns[0], service, arns[1])
        )

    def _access_logs(self, name: str, args: ModelStoreArgs, tags: dict[str, str]) -> aws.s3.Bucket:
        logs_name = f"{name}-logs"
        base = args.bucket_prefix if args.bucket_name is None else args.bucket_name
        prefix_room = _BUCKET_PREFIX_MAX - len(_LOGS_SUFFIX)
        log_bucket = aws.s3.Bucket(
            logs_name,
            bucket_prefix=base.rstrip("-.")[:prefix_room].rstrip("-.") + _LOGS_SUFFIX,
            force_destroy=args.force_destroy,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        block = _block_public_access(logs_name, log_bucket, self)
        _enforce_bucket_owner(logs_name, log_bucket, self)
        # S3 delivers server access logs only to buckets whose default encryption is SSE-S3;
        # it cannot use a KMS key.
        aws.s3.BucketServerSideEncryptionConfiguration(
            logs_name,
            bucket=log_bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.s3.BucketLifecycleConfiguration(
            logs_name,
            bucket=log_bucket.id,
            rules=[
                {
                    "id": "expire-access-logs",
                    "status": "Enabled",
                    "filter": {},
                    "expiration": {"days": args.access_log_days},
                    "abort_incomplete_multipart_upload": {
                        "days_after_initiation": args.abort_multipart_days
                    },
                }
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        target_prefix = "access-logs/"
        # With ACLs disabled, the logging service writes under the bucket policy: only for
        # this store's bucket, in this account, and only under the log prefix.
        deliver_logs = {
            "Sid": "DeliverAccessLogs",
            "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": log_bucket.arn.apply(lambda arn: f"{arn}/{target_prefix}*"),
            "Condition": {
                "ArnLike": {"aws:SourceArn": self.bucket.arn},
                "StringEquals": {"aws:SourceAccount": account.account_id},
            },
        }
        log_policy = aws.s3.BucketPolicy(
            logs_name,
            bucket=log_bucket.id,
            policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [_deny_insecure_transport(log_bucket), deliver_logs],
                }
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[block]),
        )
        self.logging = aws.s3.BucketLogging(
            name,
            bucket=self.bucket.id,
            target_bucket=log_bucket.id,
            target_prefix=target_prefix,
            # S3 checks that it may write to the target when logging is turned on.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_policy]),
        )
        return log_bucket


def _block_public_access(
    name: str, bucket: aws.s3.Bucket, parent: pulumi.Resource
) -> aws.s3.BucketPublicAccessBlock:
    return aws.s3.BucketPublicAccessBlock(
        name,
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def _enforce_bucket_owner(
    name: str, bucket: aws.s3.Bucket, parent: pulumi.Resource
) -> aws.s3.BucketOwnershipControls:
    # ACLs off: the bucket's account owns every object, and access is decided by policy alone.
    return aws.s3.BucketOwnershipControls(
        name,
        bucket=bucket.id,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def _deny_insecure_transport(bucket: aws.s3.Bucket) -> dict[str, Any]:
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket.arn, bucket.arn.apply(lambda arn: f"{arn}/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def s3_read_policy(bucket_arn: str, prefix: str = "", kms_key_arn: str | None = None) -> str:
    """An IAM policy (JSON) that reads the objects under one prefix of a bucket (all of it when
    `prefix` is empty) and lists only that prefix; with `kms_key_arn`, it may also decrypt with
    that key, which reading SSE-KMS objects needs. Both a store's services and models kept
    outside the store are read through it."""
    prefix = prefix.rstrip("/")
    objects = f"{bucket_arn}/{prefix}/*" if prefix else f"{bucket_arn}/*"
    listing: dict[str, Any] = {
        "Sid": "ListModel",
        "Effect": "Allow",
        "Action": ["s3:ListBucket"],
        "Resource": [bucket_arn],
    }
    if prefix:
        # The trailing '/' keeps prefix "a" from listing "ab".
        listing["Condition"] = {"StringLike": {"s3:prefix": [f"{prefix}/*"]}}
    statements: list[dict[str, Any]] = [
        {"Sid": "ReadModel", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [objects]},
        listing,
    ]
    if kms_key_arn is not None:
        statements.append(
            {
                "Sid": "DecryptModel",
                "Effect": "Allow",
                "Action": ["kms:Decrypt"],
                "Resource": [kms_key_arn],
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def s3_uri_read_policy(uri: str) -> str:
    """`s3_read_policy` for the objects under an `s3://bucket/prefix/` URI: for a model kept
    outside the environment's model store."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return s3_read_policy(f"arn:aws:s3:::{bucket}", prefix)
