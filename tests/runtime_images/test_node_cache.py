"""The node's model cache server on 127.0.0.1: blobs kept only under their own SHA-256, a byte
budget with least-recently-used eviction, a limit per blob, and concurrent uploads and reads of
one blob."""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fermion.runtime_images.server.node_cache import BlobStore, CacheServer

from ..runtime.conftest import free_port

SERVER_PARENT = Path(__file__).resolve().parents[2] / "runtime_images"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Cache:
    """A running cache server and a client for it."""

    def __init__(self, root: Path, max_bytes: int, max_blob_bytes: int | None = None) -> None:
        self.store = BlobStore(root, max_bytes, max_blob_bytes)
        self.server = CacheServer(("127.0.0.1", 0), self.store)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, body=body)
            answer = connection.getresponse()
            return answer.status, answer.read()
        finally:
            connection.close()

    def put(self, data: bytes, digest: str | None = None) -> int:
        return self.request(
            "PUT", f"/blobs/sha256/{sha(data) if digest is None else digest}", data
        )[0]

    def get(self, digest: str) -> tuple[int, bytes]:
        return self.request("GET", f"/blobs/sha256/{digest}")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _put_header(data: bytes) -> bytes:
    return (
        f"PUT /blobs/sha256/{sha(data)} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Cache]:
    running = Cache(tmp_path / "cache", max_bytes=3000, max_blob_bytes=1500)
    yield running
    running.stop()


def test_keeps_a_blob_under_its_sum_and_answers_it(cache: Cache) -> None:
    data = os.urandom(1000)
    assert cache.get(sha(data))[0] == 404
    assert cache.put(data) == 201
    assert cache.get(sha(data)) == (200, data)
    assert cache.put(data) == 200  # already held: nothing written again
    assert cache.store.used_bytes == 1000
    assert cache.request("GET", "/healthz") == (200, b"ok\n")


def test_a_body_that_does_not_match_its_sum_is_refused_and_not_kept(cache: Cache) -> None:
    data = os.urandom(1000)
    claimed = sha(b"something else")
    status, body = cache.request("PUT", f"/blobs/sha256/{claimed}", data)
    assert status == 400
    assert b"sha256" in body
    assert cache.get(claimed)[0] == 404
    assert cache.get(sha(data))[0] == 404
    assert list((cache.store.root / "sha256").iterdir()) == []
    assert list((cache.store.root / "incoming").iterdir()) == []
    assert cache.store.used_bytes == 0


def test_a_body_cut_short_is_refused_and_not_kept(cache: Cache) -> None:
    data = os.urandom(1000)
    with socket.create_connection(("127.0.0.1", cache.port), timeout=10) as raw:
        raw.sendall(_put_header(data) + data[:400])
        raw.shutdown(socket.SHUT_WR)
        answer = raw.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 400")
    assert cache.get(sha(data))[0] == 404
    assert list((cache.store.root / "incoming").iterdir()) == []


@pytest.mark.parametrize(
    "path",
    ["/blobs/sha256/../../etc/passwd", "/blobs/sha256/ABCDEF", f"/blobs/md5/{'0' * 64}", "/"],
)
def test_only_sha256_names_are_paths(cache: Cache, path: str) -> None:
    assert cache.request("GET", path)[0] == 404
    assert cache.request("PUT", path, b"x")[0] == 404


def test_limits_per_blob_and_a_put_without_a_length(cache: Cache) -> None:
    big = os.urandom(1501)
    status, body = cache.request("PUT", f"/blobs/sha256/{sha(big)}", big)
    assert status == 413
    assert b"1500" in body
    with socket.create_connection(("127.0.0.1", cache.port), timeout=10) as raw:
        raw.sendall(f"PUT /blobs/sha256/{sha(b'x')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        raw.shutdown(socket.SHUT_WR)
        assert raw.makefile("rb").read().startswith(b"HTTP/1.1 411")
    assert cache.store.used_bytes == 0


def test_evicts_the_least_recently_used_within_its_budget(cache: Cache) -> None:
    a, b, c, d = (os.urandom(1000) for _ in range(4))
    for blob in (a, b, c):
        assert cache.put(blob) == 201
    assert cache.get(sha(a))[0] == 200  # a is now used more recently than b
    assert cache.put(d) == 201
    assert cache.get(sha(b))[0] == 404
    for blob in (a, c, d):
        assert cache.get(sha(blob)) == (200, blob)
    assert cache.store.used_bytes == 3000
    on_disk = sum(p.stat().st_size for p in (cache.store.root / "sha256").iterdir())
    assert on_disk == 3000


def test_space_held_by_an_upload_in_progress_is_not_given_twice(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache", max_bytes=3000, max_blob_bytes=2000)
    first, second, third = os.urandom(1000), os.urandom(2000), os.urandom(1500)
    try:
        assert cache.put(first) == 201
        with socket.create_connection(("127.0.0.1", cache.port), timeout=10) as raw:
            raw.sendall(_put_header(second) + second[:10])
            incoming = cache.store.root / "incoming"
            deadline = time.monotonic() + 10
            while not list(incoming.iterdir()) and time.monotonic() < deadline:
                time.sleep(0.01)
            # `second` holds 2000 of the 3000 bytes while it arrives: even with `first`
            # evicted, `third` would not fit, so it is refused and `first` stays.
            status, body = cache.request("PUT", f"/blobs/sha256/{sha(third)}", third)
            assert (status, body) == (
                507,
                b"uploads in progress hold the rest of the cache's budget\n",
            )
            assert cache.get(sha(first)) == (200, first)
            raw.sendall(second[10:])
            assert raw.makefile("rb").readline().startswith(b"HTTP/1.1 201")
        assert cache.get(sha(second)) == (200, second)
        assert cache.put(third) == 201  # with nothing in progress, older blobs make room
        assert cache.store.used_bytes <= 3000
    finally:
        cache.stop()


def test_concurrent_uploads_and_reads_of_one_blob(cache: Cache) -> None:
    data = os.urandom(1400)
    puts: list[int] = []
    gets: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def put() -> None:
        status = cache.put(data)
        with lock:
            puts.append(status)

    def get() -> None:
        answer = cache.get(sha(data))
        with lock:
            gets.append(answer)

    threads = [threading.Thread(target=f) for _ in range(8) for f in (put, get)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(puts) == [200] * 7 + [201]
    for status, body in gets:
        assert (status, body) in ((404, b"not in this node's cache\n"), (200, data))
    assert cache.get(sha(data)) == (200, data)
    assert cache.store.used_bytes == 1400
    assert list((cache.store.root / "incoming").iterdir()) == []


def test_a_new_process_takes_up_the_blobs_and_drops_unfinished_uploads(tmp_path: Path) -> None:
    first = Cache(tmp_path / "cache", max_bytes=3000)
    data = os.urandom(1000)
    assert first.put(data) == 201
    first.stop()
    (tmp_path / "cache" / "incoming" / "left-over").write_bytes(b"partial")
    (tmp_path / "cache" / "sha256" / "not-a-sum").write_bytes(b"stray")
    (tmp_path / "cache" / "sha256" / ("0" * 64)).mkdir()
    (tmp_path / "cache" / "incoming" / "a-folder").mkdir()
    again = Cache(tmp_path / "cache", max_bytes=3000)
    try:
        assert again.get(sha(data)) == (200, data)
        assert again.store.used_bytes == 1000
        assert list((tmp_path / "cache" / "incoming").iterdir()) == []
        assert sorted(p.name for p in (tmp_path / "cache" / "sha256").iterdir()) == [sha(data)]
    finally:
        again.stop()


def test_runs_as_the_image_runs_it_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "server.node_cache", "--host", "127.0.0.1", "--port", str(port),
         "--dir", str(tmp_path / "blobs"), "--max-bytes", "1000000"],
        cwd=SERVER_PARENT,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/healthz")
                assert connection.getresponse().status == 200
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        data = b"weights"
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("PUT", f"/blobs/sha256/{sha(data)}", body=data)
        assert connection.getresponse().status == 201
        assert (tmp_path / "blobs" / "sha256" / sha(data)).read_bytes() == data
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode()
    assert b"node cache on 127.0.0.1" in stderr


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "server.node_cache", "--dir", str(tmp_path), "--max-bytes", "0"],
        cwd=SERVER_PARENT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 2
    assert "--max-bytes" in answer.stderr
    assert "Traceback" not in answer.stderr


def _cache_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.node_cache", "--host", "127.0.0.1", *args],
        cwd=SERVER_PARENT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_folder_it_cannot_use_is_named_with_the_fix(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    answer = _cache_command("--dir", str(not_a_folder), "--max-bytes", "10")
    assert answer.returncode == 1
    assert f"cannot keep blobs in {not_a_folder}: Not a directory" in answer.stderr
    assert "Point --dir at a folder this user can write" in answer.stderr
    assert "Traceback" not in answer.stderr


def test_a_port_in_use_is_named_with_the_fix(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        answer = _cache_command(
            "--port", str(port), "--dir", str(tmp_path / "blobs"), "--max-bytes", "10"
        )
    assert answer.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in answer.stderr
    assert "Pick a free --port" in answer.stderr
    assert "Traceback" not in answer.stderr
