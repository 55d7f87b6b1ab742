"""The wheel carries every package and data file, and works without the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from importlib.resources import files
from pathlib import Path

import pytest

from .conftest import REPO

PROBE = """
import importlib.resources, sys
import fermion.components, fermion.environments, fermion.runtime_images, fermion.stacks, fermion.cli
import fermion.policies
from fermion.environments import load_environment, load_shapes
from fermion.stacks import STACKS_DIR
site = sys.argv[1]
packages = (fermion.environments, fermion.stacks, fermion.cli, fermion.components, fermion.policies)
for module in (*packages, fermion.runtime_images):
    assert module.__file__.startswith(site), module.__file__
templates = importlib.resources.files("fermion.templates")
assert str(templates).startswith(site) and templates.is_dir(), templates
spec = load_environment("dev", STACKS_DIR)
assert spec.services[0].name == "embed", spec
assert len(load_shapes()) > 20
from fermion.components.cluster_addons import load_balancer_controller_policy
assert "elasticloadbalancing:" in load_balancer_controller_policy()
from fermion.stacks.plan import plan_environment
plan = plan_environment(spec)
assert len(plan.resources) > 50 and plan.cost.per_hour_max_usd > 0, plan.cost
sys.argv = ["fermion", "validate", "prod"]
from fermion.cli import main
main()
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("fermion-*.whl")
    return built


def test_wheel_holds_packages_and_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "fermion/environments/shapes.yaml",
        "fermion/stacks/Pulumi.dev.yaml",
        "fermion/stacks/Pulumi.prod.yaml",
        "fermion/stacks/__main__.py",
        "fermion/templates/__init__.py",
        "fermion/cli/app.py",
        "fermion/components/__init__.py",
        "fermion/components/aws_load_balancer_controller_iam_policy.json",
        "fermion/cli/plan.py",
        "fermion/runtime_images/__init__.py",
        "fermion/policies/__main__.py",
        "fermion/policies/py.typed",
    ):
        assert expected in names, expected
    assert not any(n.startswith("tests/") for n in names)


def test_wheel_install_runs_without_the_source_tree(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
         str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    # -S skips site-packages (and the editable install's import hook in it); the dependencies
    # come from the test environment's site-packages, fermion from the wheel alone.
    deps = sysconfig.get_paths()["purelib"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), deps])}
    env.pop("FERMION_STACKS_DIR", None)
    done = subprocess.run(
        [sys.executable, "-S", "-c", PROBE, str(site)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "environment prod is valid" in done.stdout


def test_templates_load_as_package_data_from_the_editable_install() -> None:
    templates = files("fermion.templates")
    assert templates.is_dir()
    assert Path(str(templates)).resolve() == (REPO / "templates").resolve()
