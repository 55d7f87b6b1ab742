from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fermion.cli import app

from ..conftest import STACKS

runner = CliRunner()


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("validate", "shapes"):
        assert command in result.stdout


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.stdout + result.stderr


def test_help_imports_neither_pulumi_aws_nor_torch() -> None:
    probe = (
        "import sys; from fermion.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pulumi_aws', 'pulumi_kubernetes', 'torch', 'pulumi', 'boto3', 'pydantic'))\n"
        "print('HEAVY', heavy, file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert "HEAVY []" in done.stderr


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("fermion ")


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_validate_shipped_environments(env: str) -> None:
    result = runner.invoke(app, ["validate", env, "--stacks-dir", str(STACKS)])
    assert result.exit_code == 0, result.stderr
    assert f"environment {env} is valid" in result.stdout
    assert "services" in result.stdout


def test_validate_json_has_the_defaults_filled_in() -> None:
    result = runner.invoke(app, ["validate", "dev", "--stacks-dir", str(STACKS), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["file"].endswith("Pulumi.dev.yaml")
    env = data["environment"]
    assert env["name"] == "dev"
    assert env["network"]["flow_logs"] is True
    assert env["services"][0]["timeout_s"] == 30.0


def test_validate_reports_problems_on_stderr_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.bad.yaml").write_text(
        "config:\n  fermion:environment:\n    services:\n      - name: a\n        shape: gpu.zz\n"
    )
    result = runner.invoke(app, ["validate", "bad", "--stacks-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "error:" in result.stderr
    assert "services[0].shape (line 5): unknown shape" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_validate_unknown_environment(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  fermion:environment: {}\n")
    result = runner.invoke(app, ["validate", "qa", "--stacks-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "no environment 'qa'" in result.stderr
    assert "Known environments: dev" in result.stderr


def test_validate_reads_fermion_stacks_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "Pulumi.lab.yaml").write_text("config:\n  fermion:environment: {}\n")
    monkeypatch.setenv("FERMION_STACKS_DIR", str(tmp_path))
    result = runner.invoke(app, ["validate", "lab"])
    assert result.exit_code == 0
    assert "environment lab is valid" in result.stdout


def test_shapes_table() -> None:
    result = runner.invoke(app, ["shapes"])
    assert result.exit_code == 0
    for name in ("cpu.small", "gpu.a10", "gpu.h100-sxm", "gpu.8xh100-sxm"):
        assert name in result.stdout
    assert "us-east-1" in result.stdout


def test_shapes_json() -> None:
    result = runner.invoke(app, ["shapes", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["prices"]["region"] == "us-east-1"
    by_name = {s["name"]: s for s in data["shapes"]}
    a10 = by_name["gpu.a10"]
    assert a10["gpu"] == {"model": "A10G", "count": 1, "memory_gib": 24}
    assert a10["instance_types"][0]["name"] == "g5.xlarge"
    assert a10["usd_per_hour"] == a10["instance_types"][0]["usd_per_hour"]
    assert by_name["cpu.small"]["gpu"] is None
    assert by_name["gpu.h100-sxm"]["replicas_per_node"] == 8


def test_shapes_filter_by_gpu() -> None:
    result = runner.invoke(app, ["shapes", "--gpu", "h100", "--json"])
    names = [s["name"] for s in json.loads(result.stdout)["shapes"]]
    assert names == ["gpu.h100-sxm", "gpu.2xh100-sxm", "gpu.4xh100-sxm", "gpu.8xh100-sxm"]
    missing = runner.invoke(app, ["shapes", "--gpu", "v100"])
    assert missing.exit_code == 1
    assert "no shape has a GPU called 'v100'" in missing.stderr


def test_console_script_runs_as_a_process() -> None:
    fermion = Path(sys.executable).with_name("fermion")
    done = subprocess.run(
        [str(fermion), "validate", "nosuch"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "error: no environment 'nosuch'" in done.stderr
    assert "Traceback" not in done.stderr


def test_validate_without_env_checks_every_environment(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.good.yaml").write_text("config:\n  fermion:environment: {}\n")
    (tmp_path / "Pulumi.bad.yaml").write_text("config:\n  fermion:environment: {nat: 1}\n")
    result = runner.invoke(app, ["validate", "--stacks-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "✓ good" in result.stdout
    assert "✗ bad" in result.stdout
    assert "nat (line 2): unknown key" in result.stderr
    as_json = runner.invoke(app, ["validate", "--stacks-dir", str(tmp_path), "--json"])
    assert as_json.exit_code == 1
    assert [(r["environment"], r["valid"]) for r in json.loads(as_json.stdout)] == [
        ("bad", False),
        ("good", True),
    ]
    shipped = runner.invoke(app, ["validate", "--stacks-dir", str(STACKS)])
    assert shipped.exit_code == 0, shipped.stderr


def test_validate_all_in_an_empty_folder(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "--stacks-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "holds no Pulumi.<env>.yaml files" in result.stderr
