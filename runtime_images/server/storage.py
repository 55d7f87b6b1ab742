"""Where model files come from: a local path, or an `s3://` URI fetched into a local cache.

A model folder may hold `manifest.json`, `{"files": {"<relative path>": {"sha256": "<hex>"}}}`;
every listed file is checked before the model loads, and a mismatch stops the server.
boto3 reads credentials and `AWS_ENDPOINT_URL` the usual way (in a pod: EKS Pod Identity).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import LoadError

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def cache_root() -> Path:
    return Path(os.environ.get("FERMION_MODEL_CACHE", "/tmp/fermion-models"))


def materialize(location: str, cache: Path | None = None) -> Path:
    """A local path holding the model at `location`, fetched from S3 when needed and verified.

    `location` may name environment variables, as in `${FERMION_MODEL_URI}`: a runtime image
    built once serves whatever model version its deployment points it at.
    """
    expanded = os.path.expandvars(location)
    if "$" in expanded:
        raise LoadError(
            f"model path {location!r} names an environment variable that is not set; set it "
            "to the model's s3:// URI or local path"
        )
    location = expanded
    if location.startswith("s3://"):
        path = _fetch_s3(location, cache_root() if cache is None else cache)
    else:
        path = Path(location)
        if not path.exists():
            raise LoadError(f"model path {path} does not exist")
    if path.is_dir():
        verify_manifest(path)
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path) -> Path:
    """Record the SHA-256 of every file under `folder` in its manifest.json."""
    files = {
        str(p.relative_to(folder).as_posix()): {"sha256": sha256_of(p), "size": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    target = folder / MANIFEST
    target.write_text(json.dumps({"files": files}, indent=2, sort_keys=True) + "\n")
    return target


def verify_manifest(folder: Path) -> None:
    """Check the files a manifest lists; no manifest, nothing to check."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return
    try:
        listed: Any = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise LoadError(f"{manifest} is not a valid manifest ({exc!r})") from None
    if not isinstance(listed, dict):
        raise LoadError(f"{manifest}: `files` must be an object of path to {{sha256}}")
    for name, entry in listed.items():
        path = folder / PurePosixPath(name)
        if not path.is_file():
            raise LoadError(f"{manifest} lists {name}, which is missing")
        expected = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(expected, str):
            raise LoadError(f"{manifest}: {name} has no sha256")
        actual = sha256_of(path)
        if actual != expected:
            raise LoadError(
                f"{name} does not match its checksum in {MANIFEST} (sha256 {actual[:12]}..., "
                f"expected {expected[:12]}...); upload the model again"
            )


def _fetch_s3(uri: str, cache: Path) -> Path:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise LoadError(f"{uri}: write an S3 location as s3://BUCKET/PREFIX/")
    client = boto3.client("s3")
    target = cache / bucket / key.strip("/")
    try:
        if key and not key.endswith("/") and _object_exists(client, bucket, key):
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(target))
            return target
        prefix = f"{key.rstrip('/')}/" if key else ""
        count = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix) :]
                if not name or name.endswith("/"):
                    continue
                local = target / PurePosixPath(name)
                if not local.resolve().is_relative_to(target.resolve()):
                    raise LoadError(f"{uri}: object {item['Key']} escapes the model folder")
                local.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, item["Key"], str(local))
                count += 1
    except (BotoCoreError, ClientError) as exc:
        raise LoadError(f"cannot fetch {uri}: {exc}") from None
    if count == 0:
        raise LoadError(f"{uri} holds no objects; upload the model there first")
    return target


def _object_exists(client: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True
