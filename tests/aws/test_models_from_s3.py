"""The serving runtime fetches models from S3 (a moto server over HTTP) and checks manifests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from fermion.runtime_images.server.storage import write_manifest

from ..runtime.conftest import start_server, v2_input


def _upload(s3: Any, bucket: str, prefix: str, folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")


def _model_folder(models: dict[str, Path], tmp_path: Path) -> Path:
    folder = tmp_path / "affine-1"
    folder.mkdir()
    shutil.copy(models["affine"], folder / "affine.pt")
    write_manifest(folder)
    return folder


def test_serves_a_model_from_s3(
    s3: Any, moto: dict[str, str], models: dict[str, Path], tmp_path: Path
) -> None:
    s3.create_bucket(Bucket="models-ok")
    _upload(s3, "models-ok", "affine/1", _model_folder(models, tmp_path))
    server = start_server(
        ["s3://models-ok/affine/1/", "--name", "affine", "--input", "input__0:FP32:-1,4"],
        tmp_path,
        env={**moto, "FERMION_MODEL_CACHE": str(tmp_path / "cache")},
    )
    try:
        answer = server.infer("affine", {"inputs": [v2_input("input__0", [1, 2, 3, 4], [1, 4])]})
        assert answer.status == 200
        assert answer.json()["outputs"][0]["data"] == [3, 5, 7, 9]
    finally:
        assert server.stop() == 0
    assert (tmp_path / "cache" / "models-ok" / "affine" / "1" / "manifest.json").is_file()


def test_a_single_object_uri(
    s3: Any, moto: dict[str, str], models: dict[str, Path], tmp_path: Path
) -> None:
    s3.create_bucket(Bucket="models-one")
    s3.upload_file(str(models["affine"]), "models-one", "affine.pt")
    server = start_server(
        ["s3://models-one/affine.pt", "--input", "input__0:FP32:-1,4"],
        tmp_path,
        env={**moto, "FERMION_MODEL_CACHE": str(tmp_path / "cache")},
    )
    try:
        assert server.request("GET", "/v2/models/affine").status == 200
    finally:
        server.stop()


def test_a_file_that_fails_its_checksum_stops_the_server(
    s3: Any, moto: dict[str, str], models: dict[str, Path], tmp_path: Path
) -> None:
    s3.create_bucket(Bucket="models-bad")
    folder = _model_folder(models, tmp_path)
    with (folder / "affine.pt").open("ab") as handle:
        handle.write(b"tampered")
    _upload(s3, "models-bad", "affine/1", folder)
    server = start_server(
        ["s3://models-bad/affine/1/", "--input", "input__0:FP32:-1,4"],
        tmp_path,
        env={**moto, "FERMION_MODEL_CACHE": str(tmp_path / "cache")},
        wait_ready=False,
    )
    assert server.process.wait(timeout=60) == 1
    assert "affine.pt does not match its checksum in manifest.json" in server.output()


def test_an_empty_prefix_stops_the_server(s3: Any, moto: dict[str, str], tmp_path: Path) -> None:
    s3.create_bucket(Bucket="models-empty")
    server = start_server(
        ["s3://models-empty/nothing/here/", "--input", "input__0:FP32:-1,4"],
        tmp_path,
        env={**moto, "FERMION_MODEL_CACHE": str(tmp_path / "cache")},
        wait_ready=False,
    )
    assert server.process.wait(timeout=60) == 1
    assert "holds no objects; upload the model there first" in server.output()
