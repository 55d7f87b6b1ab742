"""`fermion models ls` and `fermion models pull`: the versions in the store, and one fetched back.

A pull downloads into a hidden folder beside the destination, checks every file against the
manifest's size and SHA-256, and only then moves the folder into place. A file that fails its
check is named, and nothing of the download is kept.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from fermion.environments.errors import FermionError
from fermion.runtime_images.server.storage import MANIFEST, sha256_of
from fermion.stacks.aws_errors import aws_errors
from fermion.stacks.model_store_access import (
    ModelLocation,
    TransferProgress,
    manifest_text,
    read_manifest,
    transfer_config,
)

__all__ = [
    "DestinationNotEmptyError",
    "ModelChecksumError",
    "ModelVersion",
    "VersionNotPublishedError",
    "list_versions",
    "pull_model",
]


class VersionNotPublishedError(FermionError):
    """A version with no manifest: never pushed, or a push that did not finish."""

    def __init__(self, location: ModelLocation) -> None:
        self.location = location
        super().__init__(
            f"{location.uri} has no {MANIFEST}, so version {location.version!r} of "
            f"{location.service!r} is not published (never pushed, or its push did not finish). "
            "Run `fermion models push` for it, or `fermion models ls` to see the versions there"
        )


class ModelChecksumError(FermionError):
    """A downloaded file whose size or SHA-256 is not the one its manifest lists."""

    def __init__(self, location: ModelLocation, name: str, problem: str) -> None:
        self.name = name
        super().__init__(
            f"{name} from {location.uri} does not match {MANIFEST} ({problem}); the download "
            "was removed. Push the version again with `fermion models push --force`"
        )


class DestinationNotEmptyError(FermionError):
    """The pull's destination holds files already."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        super().__init__(
            f"{dest} exists and is not an empty folder. Pull into a new or empty folder"
        )


@dataclass(frozen=True)
class ModelVersion:
    """One version of a service's model in the store, and whether the service serves it."""

    service: str
    version: str
    files: int
    size: int
    modified: datetime | None
    published: bool
    serving: bool

    def as_json(self) -> dict[str, object]:
        """The version for `--json`."""
        return {
            "service": self.service,
            "version": self.version,
            "files": self.files,
            "bytes": self.size,
            "modified": None if self.modified is None else self.modified.isoformat(),
            "published": self.published,
            "serving": self.serving,
        }


def list_versions(client: Any, bucket: str, service: str, serving: str) -> list[ModelVersion]:
    """Every version under `service/` in `bucket`, oldest first, plus the `serving` version when
    it is missing from the store (with no files, so that the gap shows)."""
    seen: dict[str, list[Any]] = {}
    prefix = f"{service}/"
    with aws_errors(every=True):
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                version, _, name = str(item["Key"])[len(prefix) :].partition("/")
                if version and name:
                    seen.setdefault(version, []).append(item)
    versions = []
    for version, items in seen.items():
        files = [i for i in items if not str(i["Key"]).endswith(f"/{MANIFEST}")]
        versions.append(
            ModelVersion(
                service=service,
                version=version,
                files=len(files),
                size=sum(int(i["Size"]) for i in files),
                modified=max(i["LastModified"] for i in items),
                published=len(files) < len(items),
                serving=version == serving,
            )
        )
    if serving not in seen:
        versions.append(ModelVersion(service, serving, 0, 0, None, False, True))
    return sorted(versions, key=lambda v: (v.modified is None, v.modified, v.version))


def pull_model(
    client: Any, location: ModelLocation, dest: Path, progress: TransferProgress | None = None
) -> dict[str, int]:
    """Download the published version at `location` into `dest` and check every file.

    Returns the files fetched, with their sizes.
    """
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        raise DestinationNotEmptyError(dest)
    manifest = read_manifest(client, location)
    if manifest is None:
        raise VersionNotPublishedError(location)
    partial = dest.parent / f".{dest.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
        if progress is not None:
            progress.start(sum(e.size for e in manifest.values()))
        config = transfer_config()
        for name, entry in sorted(manifest.items()):
            local = partial / PurePosixPath(name)
            if not local.resolve().is_relative_to(partial.resolve()):
                raise ModelChecksumError(location, name, "its path escapes the model folder")
            local.parent.mkdir(parents=True, exist_ok=True)
            with aws_errors(every=True):
                client.download_file(
                    location.bucket,
                    f"{location.prefix}{name}",
                    str(local),
                    Config=config,
                    Callback=None if progress is None else progress.advance,
                )
            size = local.stat().st_size
            if size != entry.size:
                raise ModelChecksumError(location, name, f"{size} bytes, expected {entry.size}")
            actual = sha256_of(local)
            if actual != entry.sha256:
                raise ModelChecksumError(
                    location, name, f"sha256 {actual[:12]}..., expected {entry.sha256[:12]}..."
                )
        (partial / MANIFEST).write_text(manifest_text(manifest), encoding="utf-8")
        if dest.exists():
            dest.rmdir()
        partial.rename(dest)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return {name: entry.size for name, entry in manifest.items()}
