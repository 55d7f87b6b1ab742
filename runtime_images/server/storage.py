"""Where model files come from: a local path, or an `s3://` URI fetched into a local cache.

A model folder may hold `manifest.json`, `{"files": {"<relative path>": {"sha256": "<hex>"}}}`;
every listed file is checked before the model loads, and a mismatch stops the server.
boto3 reads credentials and `AWS_ENDPOINT_URL` the usual way (in a pod: EKS Pod Identity).

From S3, a published version (one with a manifest) is fetched file by file in parallel ranged
GETs, with retries and backoff. Each file lands beside its place, is checked against the
manifest, and only then takes its place; a file already in the cache with the listed sum is not
fetched again. With `FERMION_MODEL_CACHE_URL`, each file is asked of the node's cache first and
checked the same way, and a file fetched from S3 is offered to that cache in the background.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from .errors import LoadError

MANIFEST = "manifest.json"
_CHUNK = 1 << 20
# Ten ranged GETs in flight. A file of known size is cut into one range per stream, as the
# benchmark's limit is (bench/models), between 16 MiB and 256 MiB a range: an object store
# that pays per request in proportion to the object's size (moto does) gets few requests, and a
# retry after a dropped connection never refetches more than 256 MiB.
_PART_BYTES = 16 << 20
_MAX_PART_BYTES = 256 << 20
_CONCURRENCY = 10
_ATTEMPTS = 8
# The node's model cache (node_cache.py), as http://HOST:PORT; unset, there is none.
CACHE_URL_VARIABLE = "FERMION_MODEL_CACHE_URL"
# Where a file came from, as /metrics labels it.
SOURCE_NODE_CACHE = "node_cache"
SOURCE_S3 = "s3"
# The node's cache is on the node: a connection or read that stalls this long means it is
# down or overloaded, and the file comes from S3 instead.
_CACHE_TIMEOUT_S = 2.0
# A node-local cache moves far more than this; a transfer slower than it on average (after a
# few seconds' grace) is given up.
_CACHE_MIN_BYTES_PER_S = 32 << 20
_CACHE_GRACE_S = 5.0

log = logging.getLogger("fermion.server")


def cache_root() -> Path:
    return Path(os.environ.get("FERMION_MODEL_CACHE", "/tmp/fermion-models"))


def materialize(
    location: str,
    cache: Path | None = None,
    counter: Callable[[int], None] | None = None,
    sources: Sources | None = None,
) -> Path:
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
        # Each file fetched from S3 was checked against the manifest as it arrived.
        root = cache_root() if cache is None else cache
        return _fetch_s3(location, root, counter, Sources() if sources is None else sources)
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


@dataclass(frozen=True)
class Loaded:
    """Files, and their bytes, that came from one source."""

    files: int = 0
    bytes: int = 0


class Sources:
    """Files and bytes by where they came from (`SOURCE_NODE_CACHE`, `SOURCE_S3`), and the
    node's cache the load used, if any (it may still be taking the files offered to it)."""

    def __init__(self) -> None:
        self.by_source: dict[str, Loaded] = {}
        self.node_cache: NodeCache | None = None

    def add(self, source: str, size: int) -> None:
        before = self.by_source.get(source, Loaded())
        self.by_source[source] = Loaded(before.files + 1, before.bytes + size)


@dataclass(frozen=True)
class Fetched:
    """A model made local: its path, the bytes downloaded from S3 for it and how long the
    fetch took (0 and 0.0 for a local path, or when every file was in the pod's cache
    already), and the files and bytes by source (`node_cache`, `s3`)."""

    path: Path
    downloaded_bytes: int
    seconds: float
    by_source: dict[str, Loaded] = field(default_factory=dict)
    node_cache: NodeCache | None = field(default=None, repr=False, compare=False)

    def offers_done(self, timeout: float | None = None) -> bool:
        """Wait until the node's cache has been offered every file fetched from S3 (the load
        itself never waits for that); whether it has, within `timeout` seconds."""
        return self.node_cache is None or self.node_cache.wait(timeout)


def fetch(location: str, cache: Path | None = None) -> Fetched:
    """`materialize`, with what it fetched, from where, and how long it took, for /metrics."""
    started = time.perf_counter()
    counter = _Counter()
    sources = Sources()
    path = materialize(location, cache, counter, sources)
    fetched_any = counter.total or sources.by_source
    seconds = time.perf_counter() - started if fetched_any else 0.0
    return Fetched(path, counter.total, seconds, dict(sources.by_source), sources.node_cache)


class _Counter:
    """Bytes received, added from the transfer manager's worker threads."""

    def __init__(self) -> None:
        self.total = 0
        self._lock = threading.Lock()

    def __call__(self, received: int) -> None:
        with self._lock:
            self.total += received


def _s3_client() -> Any:
    import boto3
    from botocore.config import Config

    # botocore's standard mode retries 5xx answers, throttling and dropped connections with
    # exponential backoff and jitter; enough connections for every part in flight.
    config = Config(
        retries={"max_attempts": _ATTEMPTS, "mode": "standard"},
        max_pool_connections=_CONCURRENCY * 2,
    )
    return boto3.client("s3", config=config)


def part_bytes(size: int | None) -> int:
    """The size of each ranged GET for a file of `size` bytes (None: not known)."""
    if size is None:
        return _PART_BYTES
    return min(_MAX_PART_BYTES, max(_PART_BYTES, -(-size // _CONCURRENCY)))


def _transfer_config(size: int | None = None) -> Any:
    from boto3.s3.transfer import TransferConfig

    # Ranged GETs, ten at a time; s3transfer also retries a body cut short.
    return TransferConfig(
        multipart_threshold=_PART_BYTES,
        multipart_chunksize=part_bytes(size),
        max_concurrency=_CONCURRENCY,
        num_download_attempts=_ATTEMPTS,
    )


def _fetch_s3(
    uri: str, cache: Path, counter: Callable[[int], None] | None, sources: Sources
) -> Path:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise LoadError(f"{uri}: write an S3 location as s3://BUCKET/PREFIX/")
    client = _s3_client()
    config = _transfer_config()
    target = cache / bucket / key.strip("/")
    cache_url = node_cache_url()
    node_cache = None if cache_url is None else NodeCache(cache_url)
    sources.node_cache = node_cache
    try:
        if key and not key.endswith("/") and _object_exists(client, bucket, key):
            target.parent.mkdir(parents=True, exist_ok=True)
            _download(client, bucket, key, target, config, counter)
            return target
        prefix = f"{key.rstrip('/')}/" if key else ""
        manifest = fetch_manifest(client, bucket, prefix)
        if manifest is None:
            listed = _listed_objects(client, bucket, prefix)
        else:
            listed = _manifest_files(manifest, uri)
        if not listed:
            raise LoadError(f"{uri} holds no objects; upload the model there first")
        for name, expected in listed.items():
            local = target / PurePosixPath(name)
            if not local.resolve().is_relative_to(target.resolve()):
                raise LoadError(f"{uri}: object {prefix}{name} escapes the model folder")
            if expected is not None and _cached(local, expected):
                continue
            local.parent.mkdir(parents=True, exist_ok=True)
            if node_cache is not None and expected is not None:
                from_cache = node_cache.get(str(expected["sha256"]), local)
                if from_cache is not None:
                    sources.add(SOURCE_NODE_CACHE, from_cache)
                    continue
            size = expected.get("size") if expected is not None else None
            sized = _transfer_config(size) if isinstance(size, int) else config
            _download(client, bucket, f"{prefix}{name}", local, sized, counter, expected)
            sources.add(SOURCE_S3, local.stat().st_size)
            if node_cache is not None and expected is not None:
                node_cache.offer(str(expected["sha256"]), local)
    except (BotoCoreError, ClientError) as exc:
        raise LoadError(f"cannot fetch {uri}: {exc}") from None
    finally:
        if node_cache is not None:
            node_cache.close()
    if manifest is not None:
        partial = target / f".{MANIFEST}.{os.getpid()}.partial"
        partial.write_bytes(manifest)
        partial.replace(target / MANIFEST)
    return target


def fetch_manifest(client: Any, bucket: str, prefix: str) -> bytes | None:
    """The bytes of the manifest.json under `prefix`, or None when there is none. Dropped
    connections and bodies cut short are retried with backoff."""
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        IncompleteReadError,
        ResponseStreamingError,
    )

    # botocore retries a request, but not the read of a body that is cut short: that is
    # retried here, with the same backoff.
    for attempt in range(_ATTEMPTS):
        try:
            answer = client.get_object(Bucket=bucket, Key=f"{prefix}{MANIFEST}")
            body: bytes = answer["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        except (ConnectionError, IncompleteReadError, ResponseStreamingError):
            if attempt == _ATTEMPTS - 1:
                raise
            time.sleep(min(0.1 * 2**attempt, 5.0))
            continue
        return body
    return None


def _manifest_files(body: bytes, uri: str) -> dict[str, dict[str, Any] | None]:
    """The files a manifest lists, with their sums."""
    where = f"{uri.rstrip('/')}/{MANIFEST}"
    try:
        listed: Any = json.loads(body)["files"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        listed = None
    if not isinstance(listed, dict):
        raise LoadError(f"{where} is not a valid manifest; push the model again")
    files: dict[str, dict[str, Any] | None] = {}
    for name, entry in listed.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise LoadError(f"{where}: {name} has no sha256; push the model again")
        files[str(name)] = entry
    return files


def _listed_objects(client: Any, bucket: str, prefix: str) -> dict[str, dict[str, Any] | None]:
    found: dict[str, dict[str, Any] | None] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            name = item["Key"][len(prefix) :]
            if name and not name.endswith("/"):
                found[name] = None
    return found


def _cached(local: Path, expected: dict[str, Any]) -> bool:
    """Whether `local` already holds the file the manifest lists: the cache is keyed by sum."""
    size = expected.get("size")
    if not local.is_file() or (isinstance(size, int) and local.stat().st_size != size):
        return False
    return sha256_of(local) == str(expected["sha256"])


def _download(
    client: Any,
    bucket: str,
    key: str,
    local: Path,
    config: Any,
    counter: Callable[[int], None] | None,
    expected: dict[str, Any] | None = None,
) -> None:
    """Fetch one object beside `local`, check it against the manifest, then move it into place:
    a partial or bad file is never where the model loads from."""
    # A name of this process's own: pods that share a node's cache may fetch the same file.
    partial = local.with_name(f".{local.name}.{os.getpid()}.partial")
    try:
        client.download_file(bucket, key, str(partial), Config=config, Callback=counter)
        if expected is not None:
            actual = sha256_of(partial)
            if actual != expected["sha256"]:
                raise LoadError(
                    f"{key} does not match its checksum in {MANIFEST} (sha256 {actual[:12]}..., "
                    f"expected {expected['sha256'][:12]}...); upload the model again"
                )
        partial.replace(local)
    finally:
        partial.unlink(missing_ok=True)


def _object_exists(client: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def node_cache_url() -> str | None:
    """The node's model cache, from `FERMION_MODEL_CACHE_URL`; None when it is not set."""
    url = os.environ.get(CACHE_URL_VARIABLE, "").strip().rstrip("/")
    return url if url else None


def _cache_connection(url: str) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{CACHE_URL_VARIABLE}={url!r} is not an http://HOST:PORT address")
    connection = http.client.HTTPConnection(
        parts.hostname, parts.port or 80, timeout=_CACHE_TIMEOUT_S
    )
    return connection, parts.path.rstrip("/")


def _cache_deadline(size: int) -> float:
    return time.monotonic() + _CACHE_GRACE_S + size / _CACHE_MIN_BYTES_PER_S


class NodeCache:
    """The node's model cache as one load uses it. A cache that does not answer (down, not on
    this node yet, too slow) is left alone for the rest of the load, so it costs one timeout,
    not one per file; one that will not take a file is offered no more.

    Files fetched from S3 are offered to it by a thread of its own, one after another, so the
    load goes on (to the next file, then to loading the model) while the cache takes them.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.down = False
        self.full = False
        self._offers: queue.SimpleQueue[tuple[str, Path] | None] = queue.SimpleQueue()
        self._offering: threading.Thread | None = None

    def offer(self, sha256: str, local: Path) -> None:
        """Queue the checked file `local` for the cache as blob `sha256`; returns at once."""
        if self.down or self.full:
            return
        if self._offering is None:
            # A daemon: a process that exits mid-offer leaves an upload the cache discards.
            self._offering = threading.Thread(
                target=self._offer_queued, name="node-cache-offers", daemon=True
            )
            self._offering.start()
        self._offers.put((sha256, local))

    def close(self) -> None:
        """No more offers: the thread ends once it has made those queued."""
        if self._offering is not None:
            self._offers.put(None)

    def wait(self, timeout: float | None = None) -> bool:
        """Whether every offer has been made (taken or not), after waiting up to `timeout`."""
        if self._offering is None:
            return True
        self._offering.join(timeout)
        return not self._offering.is_alive()

    def _offer_queued(self) -> None:
        while (item := self._offers.get()) is not None:
            self.put(*item)

    def get(self, sha256: str, local: Path) -> int | None:
        """Fetch the blob `sha256` into `local` and return its size, if the cache holds it and
        its bytes have that sum; None otherwise (the caller uses S3)."""
        if self.down:
            return None
        partial = local.with_name(f".{local.name}.{os.getpid()}.node-cache.partial")
        try:
            return self._get(sha256, local, partial)
        except http.client.IncompleteRead as exc:
            log.warning("node cache %s cut blob %s... short (%s)", self.url, sha256[:12], exc)
            return None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            log.warning("node cache %s unavailable (%s); loading from S3", self.url, exc)
            self.down = True
            return None
        finally:
            partial.unlink(missing_ok=True)

    def _get(self, sha256: str, local: Path, partial: Path) -> int | None:
        connection, base = _cache_connection(self.url)
        try:
            connection.request("GET", f"{base}/blobs/sha256/{sha256}")
            answer = connection.getresponse()
            if answer.status != 200:
                answer.read()
                return None
            deadline = _cache_deadline(answer.length or 0)
            digest = hashlib.sha256()
            received = 0
            with partial.open("wb") as out:
                while chunk := answer.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    received += len(chunk)
                    if time.monotonic() > deadline:
                        log.warning("node cache %s is too slow; loading from S3", self.url)
                        self.down = True
                        return None
        finally:
            connection.close()
        if digest.hexdigest() != sha256:
            log.warning(
                "node cache %s answered a blob whose sha256 is not %s...; loading from S3",
                self.url,
                sha256[:12],
            )
            return None
        partial.replace(local)
        return received

    def put(self, sha256: str, local: Path) -> bool:
        """Offer the checked file `local` as blob `sha256`: whether the cache holds it now. A
        cache that is down, full or slow only makes this False."""
        if self.down or self.full:
            return False
        try:
            status, detail = self._put(sha256, local)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            log.warning("node cache %s did not take %s (%s)", self.url, local.name, exc)
            self.full = True
            return False
        if status not in (200, 201):
            log.warning(
                "node cache %s did not take %s: %s %s", self.url, local.name, status, detail
            )
            return False
        return True

    def _put(self, sha256: str, local: Path) -> tuple[int, str]:
        size = local.stat().st_size
        connection, base = _cache_connection(self.url)
        try:
            connection.putrequest("PUT", f"{base}/blobs/sha256/{sha256}")
            connection.putheader("Content-Type", "application/octet-stream")
            connection.putheader("Content-Length", str(size))
            connection.endheaders()
            deadline = _cache_deadline(size)
            with local.open("rb") as source:
                while chunk := source.read(_CHUNK):
                    connection.send(chunk)
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"slower than {_CACHE_MIN_BYTES_PER_S >> 20} MiB/s")
            answer = connection.getresponse()
            return answer.status, answer.read().decode("utf-8", "replace").strip()
        finally:
            connection.close()
