"""`fermion plan ENV` as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from fermion.cli import app

from ..conftest import STACKS

runner = CliRunner()


def test_plan_json_from_a_fresh_process_outside_the_repo(tmp_path: Path) -> None:
    env = {**os.environ, "FERMION_STACKS_DIR": str(STACKS)}
    env.pop("AWS_ACCESS_KEY_ID", None)
    done = subprocess.run(
        [sys.executable, "-m", "fermion.cli", "plan", "dev", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["environment"] == "dev"
    types = {r["type"] for r in document["resources"]}
    assert "aws:eks/nodeGroup:NodeGroup" in types
    assert "kubernetes:helm.sh/v3:Release" in types
    assert document["cost"]["per_hour_min_usd"] < document["cost"]["per_hour_max_usd"]
    # Rendering the services' build contexts left nothing in the working folder.
    assert list(tmp_path.iterdir()) == []


def test_plan_says_it_is_offline_and_shows_tree_cost_and_findings() -> None:
    result = runner.invoke(app, ["plan", "dev", "--stacks-dir", str(STACKS)])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith("offline plan, not `pulumi preview`")
    assert "fermion:index:Platform dev" in text
    assert "fermion:index:GpuNodePool dev-gpu-l4" in text
    assert "cost per hour" in text and "total" in text
    assert "findings: none (every policy passed)" in text
    assert "kubeconfig: [secret]" in text


def test_plan_writes_manifests(tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    result = runner.invoke(
        app, ["plan", "dev", "--stacks-dir", str(STACKS), "--manifests", str(folder)]
    )
    assert result.exit_code == 0, result.output
    assert f"to {folder}" in result.stdout.replace("\n", "")
    releases = sorted((folder / "helm").glob("*.yaml"))
    assert releases
    for path in releases:
        release = yaml.safe_load(path.read_text())
        assert release["version"] and release["repositoryOpts"]["repo"].startswith("https://")
    objects = sorted(folder.glob("*.yaml"))
    assert objects
    assert all("kind" in yaml.safe_load(p.read_text()) for p in objects)


def test_an_unknown_environment_is_a_clean_error() -> None:
    result = runner.invoke(app, ["plan", "staging", "--stacks-dir", str(STACKS)])
    assert result.exit_code == 1
    assert "staging" in result.stderr
    assert "Traceback" not in result.output


def test_a_bad_environment_stops_before_planning(tmp_path: Path) -> None:
    bad = yaml.safe_load((STACKS / "Pulumi.dev.yaml").read_text())
    bad["config"]["fermion:environment"]["node_pools"][0]["shape"] = "gpu.l5"
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(bad))
    result = runner.invoke(app, ["plan", "dev", "--stacks-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "gpu.l5" in result.stderr
    # The same report `fermion validate` gives: the file, the key path and its line.
    assert "node_pools[0].shape (line " in result.stderr
    assert "Traceback" not in result.output
