"""The server's loader with the node's model cache, against a moto server reached through a
proxy on loopback that counts every request: a second pod on the node loads from the cache with
no GET of the model's bytes from S3, a poisoned or cut-short blob is never used, and a cache that
is down costs nothing but the time to find out."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fermion.runtime_images.server import storage
from fermion.runtime_images.server.node_cache import BlobStore, CacheServer
from fermion.stacks.model_push import local_files, push_model
from fermion.stacks.model_store_access import ModelLocation

from ..runtime.conftest import free_port, start_server
from .support import MotoProxy, proxy

WEIGHTS = bytes(range(256)) * (6 << 12)  # 6 MiB
CONFIG = b'{"a": 1}\n'


class _CountingProxy(MotoProxy):
    """Forwards every request to moto and records its method and path."""


@pytest.fixture
def counted(moto: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """boto3 in this process reaches moto through the counting proxy."""
    with proxy(_CountingProxy, moto["AWS_ENDPOINT_URL"]) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        yield url


@pytest.fixture
def node_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BlobStore]:
    """A node cache on loopback, named to the loader by FERMION_MODEL_CACHE_URL."""
    store = BlobStore(tmp_path / "node-cache", max_bytes=64 << 20)
    server = CacheServer(("127.0.0.1", 0), store)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(storage.CACHE_URL_VARIABLE, f"http://127.0.0.1:{server.server_address[1]}")
    yield store
    server.shutdown()
    server.server_close()


def _pushed(s3: Any, tmp_path: Path) -> ModelLocation:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(WEIGHTS)
    (folder / "sub" / "config.json").write_bytes(CONFIG)
    location = ModelLocation(f"node-cache-{uuid.uuid4().hex[:12]}", "m", "1")
    s3.create_bucket(Bucket=location.bucket)
    push_model(s3, location, local_files(folder))
    return location


def _model_gets(location: ModelLocation) -> list[str]:
    """The GETs of the model's files (not its manifest) that reached S3."""
    files = {
        f"/{location.bucket}/{location.prefix}{name}" for name in ("weights.bin", "sub/config.json")
    }
    return [path for method, path in _CountingProxy.requests if method == "GET" and path in files]


def _assert_loaded(fetched: storage.Fetched) -> None:
    assert (fetched.path / "weights.bin").read_bytes() == WEIGHTS
    assert (fetched.path / "sub" / "config.json").read_bytes() == CONFIG


def test_a_second_pod_on_the_node_loads_from_the_cache_without_s3(
    s3: Any, tmp_path: Path, node_cache: BlobStore, counted: str
) -> None:
    location = _pushed(s3, tmp_path)
    first = storage.fetch(location.uri, tmp_path / "pod-a")
    _assert_loaded(first)
    assert first.by_source == {"s3": storage.Loaded(2, len(WEIGHTS) + len(CONFIG))}
    assert len(_model_gets(location)) >= 2
    assert first.offers_done(timeout=60)
    assert node_cache.used_bytes == len(WEIGHTS) + len(CONFIG)

    _CountingProxy.requests = []
    second = storage.fetch(location.uri, tmp_path / "pod-b")  # another pod: its own /tmp
    _assert_loaded(second)
    assert second.by_source == {"node_cache": storage.Loaded(2, len(WEIGHTS) + len(CONFIG))}
    assert second.downloaded_bytes == 0
    assert _model_gets(location) == []
    # The manifest, and the sums in it, still come from S3 with the pod's own role.
    assert ("GET", f"/{location.bucket}/{location.prefix}manifest.json") in _CountingProxy.requests


@pytest.mark.parametrize("damage", ["poisoned", "truncated"])
def test_a_damaged_blob_is_never_used(
    s3: Any, tmp_path: Path, node_cache: BlobStore, counted: str, damage: str
) -> None:
    location = _pushed(s3, tmp_path)
    assert storage.fetch(location.uri, tmp_path / "pod-a").offers_done(timeout=60)
    blob = node_cache.blobs / storage.sha256_of(tmp_path / "model" / "weights.bin")
    if damage == "poisoned":
        blob.write_bytes(b"\0" * len(WEIGHTS))  # the same size, other bytes
    else:
        blob.write_bytes(WEIGHTS[: len(WEIGHTS) // 2])

    _CountingProxy.requests = []
    fetched = storage.fetch(location.uri, tmp_path / "pod-b")
    _assert_loaded(fetched)
    assert fetched.by_source == {
        "node_cache": storage.Loaded(1, len(CONFIG)),
        "s3": storage.Loaded(1, len(WEIGHTS)),
    }
    assert _model_gets(location) != []
    assert all(path.endswith("weights.bin") for path in _model_gets(location))
    assert not list((tmp_path / "pod-b").rglob("*.partial"))


def test_a_cache_that_is_down_does_not_fail_the_load(
    s3: Any, tmp_path: Path, counted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = _pushed(s3, tmp_path)
    monkeypatch.setenv(storage.CACHE_URL_VARIABLE, f"http://127.0.0.1:{free_port()}")
    fetched = storage.fetch(location.uri, tmp_path / "pod-a")
    _assert_loaded(fetched)
    assert fetched.by_source == {"s3": storage.Loaded(2, len(WEIGHTS) + len(CONFIG))}


def test_a_full_cache_does_not_fail_the_load(
    s3: Any, tmp_path: Path, counted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = _pushed(s3, tmp_path)
    store = BlobStore(tmp_path / "small-cache", max_bytes=1 << 20)  # the weights do not fit
    server = CacheServer(("127.0.0.1", 0), store)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(storage.CACHE_URL_VARIABLE, f"http://127.0.0.1:{server.server_address[1]}")
    try:
        first = storage.fetch(location.uri, tmp_path / "pod-a")
        assert first.offers_done(timeout=60)
        second = storage.fetch(location.uri, tmp_path / "pod-b")
    finally:
        server.shutdown()
        server.server_close()
    _assert_loaded(first)
    _assert_loaded(second)
    assert store.used_bytes == len(CONFIG)
    assert second.by_source == {
        "node_cache": storage.Loaded(1, len(CONFIG)),
        "s3": storage.Loaded(1, len(WEIGHTS)),
    }


def test_a_cache_address_that_is_not_http_does_not_fail_the_load(
    s3: Any, tmp_path: Path, counted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = _pushed(s3, tmp_path)
    monkeypatch.setenv(storage.CACHE_URL_VARIABLE, "unix:///var/run/cache.sock")
    _assert_loaded(storage.fetch(location.uri, tmp_path / "pod-a"))


def test_metrics_show_where_the_model_came_from(
    s3: Any,
    moto: dict[str, str],
    models: dict[str, Path],
    tmp_path: Path,
    node_cache: BlobStore,
) -> None:
    folder = tmp_path / "affine"
    folder.mkdir()
    shutil.copy(models["affine"], folder / "affine.pt")
    location = ModelLocation(f"node-cache-{uuid.uuid4().hex[:12]}", "affine", "1")
    s3.create_bucket(Bucket=location.bucket)
    push_model(s3, location, local_files(folder))
    size = (folder / "affine.pt").stat().st_size
    cache_url = os.environ[storage.CACHE_URL_VARIABLE]  # set by the node_cache fixture
    texts = []
    for pod in ("pod-a", "pod-b"):  # two pods on one node, each with its own /tmp
        (tmp_path / pod).mkdir()
        server = start_server(
            [location.uri, "--name", "affine", "--input", "input__0:FP32:-1,4"],
            tmp_path / pod,
            env={
                **moto,
                "FERMION_MODEL_CACHE": str(tmp_path / pod / "models"),
                storage.CACHE_URL_VARIABLE: cache_url,
            },
        )
        try:
            texts.append(server.request("GET", "/metrics").body.decode())
            # The first pod offers its file to the cache after it is ready, not before.
            deadline = time.monotonic() + 60
            while node_cache.used_bytes < size and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            server.stop()
    first, second = texts
    assert 'fermion_model_loaded_files{model="affine",source="s3"} 1' in first
    assert f'fermion_model_loaded_bytes{{model="affine",source="s3"}} {size}' in first
    assert 'fermion_model_loaded_files{model="affine",source="node_cache"} 1' in second
    assert f'fermion_model_loaded_bytes{{model="affine",source="node_cache"}} {size}' in second
    assert 'source="s3"' not in second
    assert 'fermion_model_fetch_bytes{model="affine"} 0' in second


def test_a_cache_that_never_answers_is_asked_once_per_load(
    s3: Any, tmp_path: Path, counted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache that accepts connections and then says nothing (a hung process, say) costs the
    load one timeout: the loader leaves it alone for the files after the first."""
    location = _pushed(s3, tmp_path)
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            accepted.append(connection)

    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]
    monkeypatch.setenv(storage.CACHE_URL_VARIABLE, f"http://127.0.0.1:{port}")
    try:
        fetched = storage.fetch(location.uri, tmp_path / "pod-a")
    finally:
        listener.close()
        for connection in accepted:
            connection.close()
    _assert_loaded(fetched)
    assert fetched.by_source == {"s3": storage.Loaded(2, len(WEIGHTS) + len(CONFIG))}
    assert len(accepted) == 1


def test_the_load_does_not_wait_for_the_cache_to_take_a_file(
    s3: Any, tmp_path: Path, node_cache: BlobStore, counted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However long the cache takes to be offered a file, the load does not wait for it: the
    files from S3 are offered from a thread of the loader's own."""
    location = _pushed(s3, tmp_path)
    release = threading.Event()
    offer = storage.NodeCache.put

    def slow_offer(cache: storage.NodeCache, sha256: str, local: Path) -> bool:
        release.wait(timeout=60)
        return offer(cache, sha256, local)

    monkeypatch.setattr(storage.NodeCache, "put", slow_offer)
    try:
        fetched = storage.fetch(location.uri, tmp_path / "pod-a")
        _assert_loaded(fetched)
        assert not fetched.offers_done(timeout=0.2)  # the load is done, the offers are not
        assert node_cache.used_bytes == 0
    finally:
        release.set()
    assert fetched.offers_done(timeout=60)
    assert node_cache.used_bytes == len(WEIGHTS) + len(CONFIG)
