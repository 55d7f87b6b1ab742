"""Where a service's model versions live in the store, and how fermion reaches them.

The store is laid out as `s3://<bucket>/<service>/<version>/`: the model's files, and a
`manifest.json` of their SHA-256 sums and sizes, in the format the serving runtime reads
(`fermion.runtime_images.server.storage`). A version is published once its manifest exists;
the manifest is written last, so a version is never published half-uploaded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from fermion.environments.errors import FermionError
from fermion.runtime_images.server.storage import MANIFEST, fetch_manifest
from fermion.stacks.aws_errors import aws_errors, error_code

if TYPE_CHECKING:
    from fermion.environments.sections import ServiceSpec
    from fermion.environments.spec import EnvironmentSpec

__all__ = [
    "SHA256_METADATA",
    "BucketNotFoundError",
    "BucketUnknownError",
    "ManifestEntry",
    "ModelLocation",
    "ServiceModelElsewhereError",
    "ServiceNotFoundError",
    "TransferProgress",
    "find_service",
    "manifest_text",
    "model_bucket",
    "parse_manifest",
    "read_manifest",
    "require_bucket",
    "s3_client",
    "transfer_config",
]

SHA256_METADATA = "sha256"
"""The object metadata key (`x-amz-meta-sha256`) that holds an uploaded file's SHA-256."""

# Parts of 16 MiB, ten at a time: large enough that a 1 GB model is 64 requests, small enough
# that ten in flight keep a 10 Gbit/s link busy without holding much memory.
_PART_BYTES = 16 << 20
_CONCURRENCY = 10
_ATTEMPTS = 8


class ServiceNotFoundError(FermionError):
    """A service name that the environment does not declare."""

    def __init__(self, env: str, service: str, known: list[str]) -> None:
        self.env = env
        self.service = service
        names = ", ".join(known) if known else "(none)"
        super().__init__(
            f"environment {env!r} has no service {service!r}; its services are: {names}. "
            f"Use one of those, or add the service under `services:` in Pulumi.{env}.yaml"
        )


class ServiceModelElsewhereError(FermionError):
    """A service that reads its model from its own `model.uri`, outside the store."""

    def __init__(self, service: str, uri: str) -> None:
        self.service = service
        super().__init__(
            f"service {service!r} reads its model from model.uri ({uri}), not from the "
            "environment's model store. Upload there with your own tools, or remove model.uri "
            "so that the service reads s3://<bucket>/<service>/<version>/"
        )


class BucketUnknownError(FermionError):
    """The environment's bucket is named by AWS at `fermion up`, and no name was given."""

    def __init__(self, env: str, why: str | None = None) -> None:
        self.env = env
        self.why = why
        reason = "" if why is None else f", and its stack's outputs cannot be read ({why})"
        super().__init__(
            f"environment {env!r} does not name its model bucket (storage.bucket), so AWS picks "
            f"the name when the stack is created{reason}. Pass --bucket NAME (the `bucket` "
            f"output of `fermion outputs {env}`), or set storage.bucket in Pulumi.{env}.yaml"
        )


class BucketNotFoundError(FermionError):
    """The model bucket does not exist, or these credentials cannot see it."""

    def __init__(self, bucket: str, env: str) -> None:
        self.bucket = bucket
        super().__init__(
            f"model bucket {bucket!r} does not exist or cannot be reached with these "
            f"credentials. Run `fermion up {env}` to create it, or check the name "
            f"(storage.bucket, or --bucket) and the account"
        )


@dataclass(frozen=True)
class ModelLocation:
    """One version of one service's model in the store."""

    bucket: str
    service: str
    version: str

    @property
    def prefix(self) -> str:
        """The key prefix of the version's objects, ending in '/'."""
        return f"{self.service}/{self.version}/"

    @property
    def manifest_key(self) -> str:
        """The key of the version's manifest.json."""
        return f"{self.prefix}{MANIFEST}"

    @property
    def uri(self) -> str:
        """The version's s3:// URI, as the server is given it."""
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class ManifestEntry:
    """One file a manifest lists: its SHA-256 and size in bytes."""

    sha256: str
    size: int


class TransferProgress(Protocol):
    """What a push or pull reports while it moves bytes; the CLI draws a progress bar."""

    def start(self, total_bytes: int) -> None:
        """The transfer is about to send `total_bytes`."""

    def advance(self, sent_bytes: int) -> None:
        """`sent_bytes` more have gone (called from the transfer's worker threads)."""


def find_service(spec: EnvironmentSpec, env: str, service: str) -> ServiceSpec:
    """The service named `service` in `spec`; it must read its model from the store."""
    for candidate in spec.services:
        if candidate.name == service:
            if candidate.model.uri is not None:
                raise ServiceModelElsewhereError(service, candidate.model.uri)
            return candidate
    raise ServiceNotFoundError(env, service, [s.name for s in spec.services])


def model_bucket(spec: EnvironmentSpec, env: str, explicit: str | None) -> str:
    """The store's bucket: `explicit` (--bucket), else the spec's storage.bucket."""
    if explicit is not None:
        return explicit
    if spec.storage.bucket is not None:
        return spec.storage.bucket
    raise BucketUnknownError(env)


def s3_client(region: str) -> Any:
    """An S3 client in `region` (boto3 finds credentials and AWS_ENDPOINT_URL as usual) that
    retries 5xx answers, throttling and dropped connections with backoff (botocore's standard
    mode), with a connection for every part in flight."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": _ATTEMPTS, "mode": "standard"},
        max_pool_connections=_CONCURRENCY * 2,
    )
    with aws_errors(region):
        return boto3.session.Session().client("s3", region_name=region, config=config)


def part_size() -> int:
    """The bytes in one part of a multipart transfer."""
    return _PART_BYTES


def concurrency() -> int:
    """How many parts move at once."""
    return _CONCURRENCY


def transfer_config() -> Any:
    """boto3's transfer settings for model files: multipart parts sent and fetched in parallel."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=_PART_BYTES,
        multipart_chunksize=_PART_BYTES,
        max_concurrency=_CONCURRENCY,
        num_download_attempts=_ATTEMPTS,
    )


def manifest_text(entries: Mapping[str, ManifestEntry]) -> str:
    """A manifest.json's text, as the server's `write_manifest` lays it out."""
    files = {name: {"sha256": e.sha256, "size": e.size} for name, e in entries.items()}
    return json.dumps({"files": files}, indent=2, sort_keys=True) + "\n"


def parse_manifest(text: str, where: str) -> dict[str, ManifestEntry]:
    """The files a manifest lists; a FermionError naming `where` when it is not one."""
    try:
        listed: Any = json.loads(text)["files"]
    except (json.JSONDecodeError, KeyError, TypeError):
        listed = None
    if not isinstance(listed, dict):
        raise FermionError(
            f'{where} is not a valid manifest (it needs {{"files": {{path: {{sha256, size}}}}}}'
            "). Push the version again with `fermion models push --force`"
        )
    entries = {}
    for name, entry in listed.items():
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        size = entry.get("size") if isinstance(entry, dict) else None
        if not isinstance(sha, str) or not isinstance(size, int):
            raise FermionError(
                f"{where}: {name} has no sha256 or size. Push the version again with "
                "`fermion models push --force`"
            )
        entries[str(name)] = ManifestEntry(sha, size)
    return entries


def require_bucket(client: Any, bucket: str, env: str) -> None:
    """Check that `bucket` exists and answers; BucketNotFoundError when it does not."""
    from botocore.exceptions import ClientError

    try:
        with aws_errors():
            client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchBucket", "NotFound", "403"):
            raise BucketNotFoundError(bucket, env) from None
        raise


def read_manifest(client: Any, location: ModelLocation) -> dict[str, ManifestEntry] | None:
    """The published version's manifest, or None when the version is not published."""
    with aws_errors():
        body = fetch_manifest(client, location.bucket, location.prefix)
    if body is None:
        return None
    text = body.decode("utf-8", errors="replace")
    return parse_manifest(text, f"s3://{location.bucket}/{location.manifest_key}")
