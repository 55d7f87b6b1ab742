"""A node's model cache: files kept by their SHA-256, served to the model servers on the node.

    python -m server.node_cache --port 8090 --dir /var/cache/fermion --max-bytes 100000000000

`GET /blobs/sha256/<hex>` answers the file whose SHA-256 is `<hex>`, or 404.
`PUT /blobs/sha256/<hex>` (with a Content-Length) streams the body to a file of its own while
hashing it, and keeps it only when the body's SHA-256 is `<hex>`: 201 when kept, 200 when the
cache held it already, 400 when the sum or the length differs (nothing is kept), 413 when the
blob is larger than `--max-blob-bytes` or the whole budget, 507 when uploads in progress hold
the rest of the budget. `GET /healthz` answers 200.

Blobs over the byte budget are evicted least recently used first. Space for an upload is
reserved before its first byte is read, so the files on disk never pass the budget. A blob is
renamed into place only once complete and checked, so a reader never sees part of one, and a
reader that opened a blob keeps reading it even if it is evicted meanwhile.

A client must still check what it gets against a sum it trusts: anyone who can reach the cache
can read any blob whose sum they know. The model server checks every file against the manifest
it read from S3 itself (storage.py).

Standard library only: this runs from the runtime image, beside no model.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import IO, Protocol

BLOB_PATH = re.compile(r"^/blobs/sha256/([0-9a-f]{64})$")
_CHUNK = 1 << 20
# A client that sends or reads nothing for this long is dropped, freeing its thread.
SOCKET_TIMEOUT_S = 30.0


class Readable(Protocol):
    """Where a PUT's body comes from: a socket's reader, or a file."""

    def read(self, size: int, /) -> bytes: ...


class BudgetError(Exception):
    """There is no room for a blob: `status` is the HTTP answer (413 or 507)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Stored:
    """What a PUT did: whether the blob was new, and the cache's size after it."""

    created: bool
    used_bytes: int


class BlobStore:
    """Blobs under `root/sha256/`, at most `max_bytes` in all and `max_blob_bytes` each, with
    uploads in progress under `root/incoming/`."""

    def __init__(self, root: Path, max_bytes: int, max_blob_bytes: int | None = None) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
        self.root = root
        self.max_bytes = max_bytes
        self.max_blob_bytes = (
            max_bytes if max_blob_bytes is None else min(max_blob_bytes, max_bytes)
        )
        self.blobs = root / "sha256"
        self.incoming = root / "incoming"
        self._lock = threading.Lock()
        self._sizes: OrderedDict[str, int] = OrderedDict()  # least recently used first
        self._used = 0
        self._reserved = 0
        self._load()

    def _load(self) -> None:
        """Take up what an earlier process left: its blobs (oldest use first), not its uploads."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.incoming.mkdir(parents=True, exist_ok=True)
        for leftover in self.incoming.iterdir():
            _remove(leftover)
        found = []
        for path in self.blobs.iterdir():
            if not BLOB_PATH.match(f"/blobs/sha256/{path.name}") or not path.is_file():
                _remove(path)
                continue
            stat = path.stat()
            found.append((stat.st_atime, path.name, stat.st_size))
        for _, name, size in sorted(found):
            self._sizes[name] = size
            self._used += size
        self._evict(0)

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return self._used

    def __contains__(self, digest: str) -> bool:
        with self._lock:
            return digest in self._sizes

    def open(self, digest: str) -> tuple[IO[bytes], int] | None:
        """The blob, opened, and its size; None when the cache does not hold it."""
        with self._lock:
            size = self._sizes.get(digest)
            if size is None:
                return None
            # Opened under the lock: an eviction after this leaves the open file readable.
            handle = (self.blobs / digest).open("rb")
            self._sizes.move_to_end(digest)
            return handle, size

    def put(self, digest: str, length: int, body: Readable) -> Stored:
        """Read `length` bytes from `body` and keep them as `digest` if that is their SHA-256.

        Raises BudgetError when there is no room, and ValueError when the body is short or its
        sum differs; then nothing is kept.
        """
        if length > self.max_blob_bytes:
            raise BudgetError(
                413, f"{length} bytes is over this cache's limit of {self.max_blob_bytes} a blob"
            )
        with self._lock:
            if digest in self._sizes:
                self._sizes.move_to_end(digest)
                return Stored(False, self._used)
            if self._reserved + length > self.max_bytes:
                # Evicting every blob would not make room: keep them.
                raise BudgetError(507, "uploads in progress hold the rest of the cache's budget")
            self._evict(length)
            self._reserved += length
        try:
            descriptor, name = tempfile.mkstemp(dir=self.incoming, prefix=f"{digest[:16]}.")
            partial = Path(name)
            try:
                with os.fdopen(descriptor, "wb") as out:
                    actual = _copy_hashing(body, out, length)
                if actual != digest:
                    raise ValueError(f"the body's sha256 is {actual}, not {digest}")
                with self._lock:
                    if digest in self._sizes:
                        return Stored(False, self._used)
                    partial.replace(self.blobs / digest)
                    self._sizes[digest] = length
                    self._used += length
                    return Stored(True, self._used)
            finally:
                partial.unlink(missing_ok=True)
        finally:
            with self._lock:
                self._reserved -= length

    def _evict(self, room: int) -> None:
        """Remove the least recently used blobs until `room` more bytes fit (under the lock)."""
        while self._sizes and self._used + self._reserved + room > self.max_bytes:
            digest, size = self._sizes.popitem(last=False)
            (self.blobs / digest).unlink(missing_ok=True)
            self._used -= size


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _copy_hashing(source: Readable, target: IO[bytes], length: int) -> str:
    digest = hashlib.sha256()
    left = length
    while left:
        chunk = source.read(min(_CHUNK, left))
        if not chunk:
            raise ValueError(f"the body ended {left} bytes before its Content-Length")
        digest.update(chunk)
        target.write(chunk)
        left -= len(chunk)
    return digest.hexdigest()


class CacheHandler(BaseHTTPRequestHandler):
    """The cache's HTTP API over one `BlobStore` (the server's `store`)."""

    protocol_version = "HTTP/1.1"
    server_version = "fermion-node-cache"
    timeout = SOCKET_TIMEOUT_S
    server: CacheServer

    def log_message(self, format: str, *args: object) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _answer(self, status: int, text: str = "") -> None:
        body = f"{text}\n".encode() if text else b""
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._answer(200, "ok")
            return
        match = BLOB_PATH.match(self.path)
        if match is None:
            self._answer(404, "not found: use /blobs/sha256/<64 lowercase hex digits>")
            return
        opened = self.server.store.open(match.group(1))
        if opened is None:
            self._answer(404, "not in this node's cache")
            return
        handle, size = opened
        with handle:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if self.command != "HEAD":
                self.connection.sendfile(handle)

    do_HEAD = do_GET

    def do_PUT(self) -> None:
        match = BLOB_PATH.match(self.path)
        if match is None:
            self.close_connection = True  # its body is left unread
            self._answer(404, "not found: use /blobs/sha256/<64 lowercase hex digits>")
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            self.close_connection = True
            self._answer(411, "a PUT needs a Content-Length")
            return
        try:
            stored = self.server.store.put(match.group(1), int(length_text), self.rfile)
        except BudgetError as exc:
            # The body is left unread: the connection cannot carry another request.
            self.close_connection = True
            self._answer(exc.status, exc.reason)
            return
        except ValueError as exc:
            self.close_connection = True
            self._answer(400, str(exc))
            return
        self._answer(201 if stored.created else 200, "stored" if stored.created else "present")


class CacheServer(ThreadingHTTPServer):
    """A threaded HTTP server over a `BlobStore`."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: BlobStore, verbose: bool = False) -> None:
        self.store = store
        self.verbose = verbose
        super().__init__(address, CacheHandler)


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m server.node_cache`."""
    parser = argparse.ArgumentParser(
        prog="python -m server.node_cache", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on")
    parser.add_argument("--dir", type=Path, required=True, help="folder the blobs are kept in")
    parser.add_argument(
        "--max-bytes", type=int, required=True, help="bytes all blobs may take together"
    )
    parser.add_argument(
        "--max-blob-bytes", type=int, default=None, help="bytes one blob may take (--max-bytes)"
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_bytes < 1 or (args.max_blob_bytes is not None and args.max_blob_bytes < 1):
        parser.error("--max-bytes and --max-blob-bytes must be at least 1")
    try:
        store = BlobStore(args.dir, args.max_bytes, args.max_blob_bytes)
    except OSError as exc:
        parser.exit(
            1,
            f"node cache: cannot keep blobs in {args.dir}: {exc.strerror or exc}. "
            "Point --dir at a folder this user can write\n",
        )
    try:
        server = CacheServer((args.host, args.port), store, args.verbose)
    except OSError as exc:
        parser.exit(
            1,
            f"node cache: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}. "
            "Pick a free --port, or stop what holds it\n",
        )

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    sys.stderr.write(
        f"node cache on {args.host}:{server.server_address[1]}, {args.dir}, "
        f"{store.used_bytes} of {store.max_bytes} bytes used\n"
    )
    sys.stderr.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
