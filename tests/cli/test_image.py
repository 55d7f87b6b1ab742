from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from fermion.cli import app

from ..conftest import STACKS

runner = CliRunner()


def test_image_list() -> None:
    result = runner.invoke(app, ["image", "list", "--json"])
    assert result.exit_code == 0
    names = [image["name"] for image in json.loads(result.stdout)]
    assert names == ["torch-cpu", "torch-cuda12"]


def test_render_a_service_of_an_environment(tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    args = ["image", "render", "embed", "--env", "dev", "--stacks-dir", str(STACKS), "-o", str(out)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["image"] == "torch-cuda12"  # gpu.l4 service
    assert len(data["tag"]) == 16
    assert "Dockerfile" in data["files"] and "serving.json" in data["files"]
    again = runner.invoke(app, args)
    assert again.exit_code == 0
    assert data["tag"] in again.stdout


def test_render_a_local_model(tmp_path: Path, models: dict[str, Path]) -> None:
    out = tmp_path / "ctx"
    result = runner.invoke(
        app,
        [
            "image",
            "render",
            "--image",
            "torch-cpu",
            "--model",
            str(models["affine"]),
            "--input",
            "input__0:FP32:-1,4",
            "-o",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert "model/affine.pt" in json.loads(result.stdout)["files"]
    assert '"path": "/srv/fermion/model/affine.pt"' in (out / "serving.json").read_text()


def test_render_errors_name_the_fix(tmp_path: Path) -> None:
    missing = runner.invoke(
        app,
        [
            "image",
            "render",
            "nope",
            "--env",
            "dev",
            "--stacks-dir",
            str(STACKS),
            "-o",
            str(tmp_path / "x"),
        ],
    )
    assert missing.exit_code == 1
    assert "environment 'dev' has no service 'nope' (it has: embed)" in missing.stderr
    neither = runner.invoke(app, ["image", "render", "-o", str(tmp_path / "y")])
    assert neither.exit_code == 1 and "give a SERVICE with --env" in neither.stderr
    bad_image = runner.invoke(
        app,
        [
            "image",
            "render",
            "--image",
            "torch-rocm",
            "--model",
            str(tmp_path),
            "-o",
            str(tmp_path / "z"),
        ],
    )
    assert bad_image.exit_code == 1 and "unknown runtime image 'torch-rocm'" in bad_image.stderr
    bad_input = runner.invoke(
        app,
        [
            "image",
            "render",
            "--image",
            "torch-cpu",
            "--model",
            str(tmp_path),
            "--input",
            "x:FP9:1",
            "-o",
            str(tmp_path / "w"),
        ],
    )
    assert bad_input.exit_code == 1 and "datatype 'FP9'" in bad_input.stderr


def test_build_without_a_docker_engine_says_so(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["image", "build", "embed", "--env", "dev", "--stacks-dir", str(STACKS)]
    )
    if result.exit_code == 0:  # a machine with a working Docker engine built the image
        assert "built fermion-local:" in result.stdout
        return
    assert result.exit_code == 1
    assert "no Docker engine is available" in result.stderr
    assert "docker buildx build DIR" in result.stderr
