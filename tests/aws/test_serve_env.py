"""`fermion serve --env ENV SERVICE`: a service served as the cluster serves it, with its own
settings and the version its model.version names, fetched from the store (a moto server)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import fermion.cli.serve as serve_module
from fermion.cli.app import app
from fermion.runtime_images.server.config import ServerConfig
from fermion.stacks.model_push import local_files, push_model
from fermion.stacks.model_store_access import ModelLocation

from ..cli.test_serve import _lines_until
from ..runtime.conftest import free_port

runner = CliRunner()
FERMION = Path(sys.executable).with_name("fermion")

ENVIRONMENT = """\
config:
  aws:region: us-east-1
  fermion:environment:
    storage:
      bucket: {bucket}
    node_pools:
      - {{name: cpu, shape: cpu.small, size: {{min: 0, max: 8}}}}
    services:
      - name: affine
        shape: cpu.small
        model: {{format: torchscript, version: "{version}"}}
        inputs: ["input__0:FP32:-1,4"]
        batching: {{max_batch_size: 4, max_delay_ms: 2}}
        replicas: {{min: 0, max: 2}}
"""


def _stacks(tmp_path: Path, bucket: str, version: str = "3") -> Path:
    stacks = tmp_path / "stacks"
    stacks.mkdir(exist_ok=True)
    text = ENVIRONMENT.format(bucket=bucket, version=version)
    (stacks / "Pulumi.dev.yaml").write_text(text)
    return stacks


def test_the_service_settings_and_store_version_reach_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[dict[str, Any]] = []

    def record(folder: Path, config: ServerConfig, args: list[str]) -> int:
        runs.append(json.loads((folder / "serving.json").read_text())["models"][0])
        return 0

    monkeypatch.setattr(serve_module, "_run", record)
    stacks = _stacks(tmp_path, "models-here")
    base = ["serve", "affine", "--env", "dev", "--stacks-dir", str(stacks)]
    result = runner.invoke(app, [*base, "--port", str(free_port()), "--max-batch-size", "2"])
    assert result.exit_code == 0, result.output
    served = runs[0]
    assert served["path"] == "s3://models-here/affine/3/"
    assert (served["version"], served["format"], served["inputs"]) == (
        "3",
        "torchscript",
        ["input__0:FP32:-1,4"],
    )
    assert (served["max_batch_size"], served["max_delay_ms"]) == (2, 2.0)  # the flag wins
    local = tmp_path / "m.pt"
    local.write_bytes(b"")
    result = runner.invoke(app, [*base, "--model", str(local), "--port", str(free_port())])
    assert result.exit_code == 0, result.output
    assert runs[1]["path"] == str(local)


def test_bad_input_to_serve_env(tmp_path: Path) -> None:
    stacks = _stacks(tmp_path, "models-here")
    cases = {
        ("serve", "ghost", "--env", "dev"): "has no service 'ghost'",
        ("serve", "affine", "--env", "dev", "--model", str(tmp_path / "no")): "does not exist",
        ("serve", str(tmp_path), "--bucket", "b"): "go with --env",
    }
    for args, message in cases.items():
        result = runner.invoke(app, [*args, "--stacks-dir", str(stacks)])
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output, (args, result.output)


def test_serves_the_pushed_version_from_the_store(
    s3: Any, moto: dict[str, str], models: dict[str, Path], tmp_path: Path
) -> None:
    bucket = f"serve-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(models["affine"], folder / "affine.pt")
    push_model(s3, ModelLocation(bucket, "affine", "3"), local_files(folder))
    stacks = _stacks(tmp_path, bucket)
    port = free_port()
    command = [str(FERMION), "serve", "affine", "--env", "dev", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--stacks-dir", str(stacks)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **os.environ,
            **moto,
            "COLUMNS": "400",
            "FERMION_MODEL_CACHE": str(tmp_path / "cache"),
        },
    )
    try:
        _lines_until(process, "Press Ctrl-C", timeout=120)
        body = {"inputs": [{"name": "input__0", "shape": [1, 4], "datatype": "FP32",
                            "data": [1, 2, 3, 4]}]}  # fmt: skip
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v2/models/affine/infer",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert json.load(answer)["outputs"][0]["data"] == [3, 5, 7, 9]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/affine", timeout=30) as a:
            assert json.load(a)["versions"] == ["3"]
    finally:
        process.terminate()
        process.wait(timeout=30)
