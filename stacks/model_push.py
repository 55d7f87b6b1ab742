"""`fermion models push`: a local model file or folder into the store, published last.

A push is resumable and idempotent. Each uploaded object carries its SHA-256 in its metadata,
so a re-run skips every file already there with the same size and sum, and sends only the rest.
A large file goes up in parts that outlive an interruption (`resumable_upload`): a re-run sends
only the parts S3 does not hold yet.
The manifest goes up last: until it exists the version is not published and the server will not
load it. A published version is never overwritten unless `force` is given; then its manifest is
deleted first, so an interrupted forced push leaves the version unpublished rather than mixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fermion.environments.errors import FermionError
from fermion.runtime_images.server.storage import MANIFEST, sha256_of
from fermion.stacks.aws_errors import aws_errors
from fermion.stacks.model_store_access import (
    SHA256_METADATA,
    ManifestEntry,
    ModelLocation,
    TransferProgress,
    concurrency,
    manifest_text,
    part_size,
    read_manifest,
    transfer_config,
)
from fermion.stacks.resumable_upload import upload_in_parts

__all__ = [
    "EmptyModelError",
    "LocalFile",
    "ModelPathNotFoundError",
    "PushResult",
    "VersionPublishedError",
    "local_files",
    "push_model",
]


class ModelPathNotFoundError(FermionError):
    """The model path given to push does not exist."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"model path {path} does not exist. Give the model file (model.pt, model.pt2) or "
            "the folder that holds it"
        )


class EmptyModelError(FermionError):
    """A model folder with no files in it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"model folder {path} holds no files. Point at the folder that holds the model "
            "files, or at the model file itself"
        )


class VersionPublishedError(FermionError):
    """The version is published already, with other files than the ones pushed."""

    def __init__(self, location: ModelLocation) -> None:
        self.location = location
        super().__init__(
            f"version {location.version!r} of {location.service!r} is already published at "
            f"{location.uri} with different files. Push a new version (--version), or pass "
            "--force to replace it"
        )


@dataclass(frozen=True)
class LocalFile:
    """A file to push: where it is, its key below the version's prefix, its size and sum."""

    path: Path
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class PushResult:
    """What a push did: the files and bytes it sent, and what it found there already."""

    location: ModelLocation
    files: int
    total_bytes: int
    sent_files: int
    sent_bytes: int
    already_published: bool
    removed: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        """The result for `--json`."""
        return {
            "bucket": self.location.bucket,
            "service": self.location.service,
            "version": self.location.version,
            "uri": self.location.uri,
            "files": self.files,
            "bytes": self.total_bytes,
            "sent_files": self.sent_files,
            "sent_bytes": self.sent_bytes,
            "already_published": self.already_published,
            "removed": list(self.removed),
        }


def local_files(path: Path) -> list[LocalFile]:
    """The files to push from `path` (a file, or every file below a folder) with their sums.

    A folder's own manifest.json is left out: push writes the manifest from what it sends.
    """
    if not path.exists():
        raise ModelPathNotFoundError(path)
    if path.is_file():
        found = [(path, path.name)]
    else:
        found = [
            (p, p.relative_to(path).as_posix())
            for p in sorted(path.rglob("*"))
            if p.is_file() and p.relative_to(path).as_posix() != MANIFEST
        ]
    if not found:
        raise EmptyModelError(path)
    return [LocalFile(p, name, p.stat().st_size, sha256_of(p)) for p, name in found]


def push_model(
    client: Any,
    location: ModelLocation,
    files: list[LocalFile],
    *,
    force: bool = False,
    progress: TransferProgress | None = None,
) -> PushResult:
    """Upload `files` to `location` and publish it by writing its manifest last."""
    wanted = {f.name: ManifestEntry(f.sha256, f.size) for f in files}
    total = sum(f.size for f in files)
    try:
        published = read_manifest(client, location)
    except FermionError:
        if not force:
            raise
        published = {}  # a manifest that cannot be read is replaced like any other
    if published is not None:
        if published == wanted and not force:
            return PushResult(location, len(files), total, 0, 0, already_published=True)
        if not force:
            raise VersionPublishedError(location)
        # Unpublish first: a forced push that stops half-way must not leave a manifest that
        # names files it has not yet replaced.
        with aws_errors(every=True):
            client.delete_object(Bucket=location.bucket, Key=location.manifest_key)
    there = _uploaded(client, location)
    to_send = [f for f in files if there.get(f.name) != ManifestEntry(f.sha256, f.size)]
    sent_bytes = sum(f.size for f in to_send)
    if progress is not None:
        progress.start(sent_bytes)
    config = transfer_config()
    # What went this run: a large file a stopped run left half-sent counts only its new parts.
    sent_now = sum(_upload_one(client, location, item, config, progress) for item in to_send)
    stale = tuple(sorted(name for name in there if name not in wanted))
    with aws_errors(every=True):
        for name in stale:
            client.delete_object(Bucket=location.bucket, Key=f"{location.prefix}{name}")
        client.put_object(
            Bucket=location.bucket,
            Key=location.manifest_key,
            Body=manifest_text(wanted).encode("utf-8"),
            ContentType="application/json",
        )
    return PushResult(
        location,
        len(files),
        total,
        len(to_send),
        sent_now,
        already_published=False,
        removed=stale,
    )


def _uploaded(client: Any, location: ModelLocation) -> dict[str, ManifestEntry | None]:
    """The objects already under the version's prefix, with the size and sum each was sent
    with (None for an object whose sum is not recorded: it is sent again)."""
    found: dict[str, ManifestEntry | None] = {}
    with aws_errors(every=True):
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=location.bucket, Prefix=location.prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                name = str(item["Key"])[len(location.prefix) :]
                if not name or name == MANIFEST:
                    continue
                head = client.head_object(Bucket=location.bucket, Key=item["Key"])
                sha = head.get("Metadata", {}).get(SHA256_METADATA)
                found[name] = None if sha is None else ManifestEntry(sha, int(item["Size"]))
    return found


def _upload_one(
    client: Any,
    location: ModelLocation,
    item: LocalFile,
    config: Any,
    progress: TransferProgress | None,
) -> int:
    """Send one file, in parallel parts that a re-run goes on with when it is large, with its
    sum in its metadata. Returns the bytes sent."""
    from boto3.exceptions import S3UploadFailedError

    metadata = {SHA256_METADATA: item.sha256}
    if item.size >= part_size():
        try:
            return upload_in_parts(
                client,
                location.bucket,
                f"{location.prefix}{item.name}",
                item.path,
                item.sha256,
                metadata,
                part_bytes=part_size(),
                concurrency=concurrency(),
                advance=None if progress is None else progress.advance,
            )
        except FermionError as exc:
            raise FermionError(
                f"uploading {item.path} to {location.uri} failed: {exc}. Run the same push "
                "again: it sends only the parts S3 does not hold yet, and the version stays "
                "unpublished until it completes"
            ) from None
    try:
        with aws_errors(every=True):
            client.upload_file(
                str(item.path),
                location.bucket,
                f"{location.prefix}{item.name}",
                ExtraArgs={"Metadata": metadata},
                Config=config,
                Callback=None if progress is None else progress.advance,
            )
    except S3UploadFailedError as exc:
        raise FermionError(
            f"uploading {item.path} to {location.uri} failed ({exc}). Run the same push again: "
            "it sends only what is missing, and the version stays unpublished until it completes"
        ) from None
    return item.size
