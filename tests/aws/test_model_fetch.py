"""The server's fetch of a pushed model from S3 (a moto server): parallel parts, each file checked
before it is used, a node-local cache keyed by the manifest's sums, retries through faults, and
the bytes and time of the download in /metrics."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from fermion.runtime_images.server import storage
from fermion.runtime_images.server.errors import LoadError
from fermion.stacks.model_push import local_files, push_model
from fermion.stacks.model_store_access import ModelLocation

from ..runtime.conftest import start_server
from .support import MotoProxy, proxy


def _pushed(s3: Any, folder: Path, service: str = "m") -> ModelLocation:
    location = ModelLocation(f"fetch-{uuid.uuid4().hex[:12]}", service, "1")
    s3.create_bucket(Bucket=location.bucket)
    push_model(s3, location, local_files(folder))
    return location


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(bytes(range(256)) * (11 << 12))  # 11 MiB
    (folder / "sub" / "config.json").write_text('{"a": 1}\n')
    return folder


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """5 MiB parts (S3's smallest), so that an 11 MiB file is fetched in three ranged GETs."""
    monkeypatch.setattr(storage, "_PART_BYTES", 5 << 20)


@pytest.mark.usefixtures("small_parts")
def test_fetches_checks_and_caches_by_sum(s3: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    location = _pushed(s3, folder)
    cache = tmp_path / "cache"
    first = storage.fetch(location.uri, cache)
    assert first.downloaded_bytes == (11 << 20) + 9
    for name in ("weights.bin", "sub/config.json"):
        assert (first.path / name).read_bytes() == (folder / name).read_bytes()
    assert (first.path / "manifest.json").is_file()
    # A restart, or a second pod on the node: everything is in the cache with the right sums.
    again = storage.fetch(location.uri, cache)
    assert (again.path, again.downloaded_bytes) == (first.path, 0)
    # A cached file that no longer matches its sum is fetched again.
    (first.path / "sub" / "config.json").write_text("changed\n")
    repaired = storage.fetch(location.uri, cache)
    assert repaired.downloaded_bytes == 9
    assert (repaired.path / "sub" / "config.json").read_text() == '{"a": 1}\n'


def test_a_bad_object_is_named_and_never_used(s3: Any, tmp_path: Path) -> None:
    location = _pushed(s3, _folder(tmp_path))
    s3.put_object(Bucket=location.bucket, Key=f"{location.prefix}sub/config.json", Body=b"{}")
    cache = tmp_path / "cache"
    with pytest.raises(LoadError, match=r"sub/config\.json does not match its checksum"):
        storage.fetch(location.uri, cache)
    target = cache / location.bucket / "m" / "1"
    assert not (target / "sub" / "config.json").exists()
    assert not list(target.rglob("*.partial"))
    assert not (target / "manifest.json").exists()


class _FlakyProxy(MotoProxy):
    """Answers the first GET of each object (or range) with a 500 and cuts the body of the
    second short; the first PUT of each object (or part) gets a 500 and the second a dropped
    connection. A client must retry them all."""

    seen: ClassVar[dict[str, int]] = {}

    def fault(self) -> str | None:
        if self.command not in ("GET", "PUT") or "list-type" in self.path:
            return None
        key = f"{self.command} {self.path}|{self.headers.get('Range', '')}"
        with self.lock:
            self.seen[key] = self.seen.get(key, 0) + 1
            count = self.seen[key]
        second = "truncate" if self.command == "GET" else "drop"
        return {1: "500", 2: second}.get(count)


@pytest.fixture
def flaky(moto: dict[str, str]) -> Iterator[str]:
    _FlakyProxy.seen = {}
    with proxy(_FlakyProxy, moto["AWS_ENDPOINT_URL"]) as url:
        yield url


@pytest.mark.usefixtures("small_parts")
def test_retries_through_errors_and_cut_bodies(
    s3: Any, tmp_path: Path, flaky: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path)
    location = _pushed(s3, folder)
    monkeypatch.setenv("AWS_ENDPOINT_URL", flaky)
    fetched = storage.fetch(location.uri, tmp_path / "cache")
    assert (fetched.path / "weights.bin").read_bytes() == (folder / "weights.bin").read_bytes()
    assert max(_FlakyProxy.seen.values()) >= 3


def test_metrics_show_the_download(
    s3: Any, moto: dict[str, str], models: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "affine"
    folder.mkdir()
    shutil.copy(models["affine"], folder / "affine.pt")
    location = _pushed(s3, folder, service="affine")
    server = start_server(
        [location.uri, "--name", "affine", "--input", "input__0:FP32:-1,4"],
        tmp_path,
        env={**moto, "FERMION_MODEL_CACHE": str(tmp_path / "cache")},
    )
    try:
        text = server.request("GET", "/metrics").body.decode()
    finally:
        server.stop()
    size = (folder / "affine.pt").stat().st_size
    assert f'fermion_model_fetch_bytes{{model="affine"}} {size}' in text
    assert 'fermion_model_fetch_seconds{model="affine"}' in text


@pytest.mark.usefixtures("small_parts")
def test_push_and_pull_recover_through_faults(
    s3: Any, tmp_path: Path, flaky: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fermion.stacks import model_store_access
    from fermion.stacks.model_versions import pull_model

    monkeypatch.setattr(model_store_access, "_PART_BYTES", 5 << 20)
    folder = _folder(tmp_path)
    location = ModelLocation(f"flaky-{uuid.uuid4().hex[:12]}", "m", "1")
    s3.create_bucket(Bucket=location.bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", flaky)
    client = model_store_access.s3_client("us-east-1")
    result = push_model(client, location, local_files(folder))
    assert (result.sent_files, result.already_published) == (2, False)
    puts = [k for k in _FlakyProxy.seen if k.startswith("PUT ")]
    assert any("partNumber=3" in k for k in puts)
    assert all(_FlakyProxy.seen[k] >= 3 for k in puts)
    pulled = pull_model(client, location, tmp_path / "pulled")
    assert set(pulled) == {"weights.bin", "sub/config.json"}
    assert (tmp_path / "pulled" / "weights.bin").read_bytes() == (
        folder / "weights.bin"
    ).read_bytes()
