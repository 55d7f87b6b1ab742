"""The project folder a stack operation runs in, and the backend it needs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fermion.stacks.backend import BackendChoice
from fermion.stacks.workspace import (
    NoStateBackendError,
    ProjectNotFoundError,
    find_project_dir,
    require_backend,
)

from ..conftest import REPO, STACKS


def test_fermions_pulumi_yaml_is_yaml_pulumi_can_read() -> None:
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    assert project["name"] == "fermion"
    assert project["main"] == "stacks/"
    assert project["stackConfigDir"] == "stacks"


def test_the_shipped_environments_run_in_the_repository_project() -> None:
    assert find_project_dir(STACKS) == REPO
    assert find_project_dir(STACKS / ".." / "stacks") == REPO


def test_a_project_of_ones_own_is_found_above_its_stack_files(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: fermion\nruntime: python\nstackConfigDir: envs\n")
    (tmp_path / "envs").mkdir()
    assert find_project_dir(tmp_path / "envs") == tmp_path


def test_stack_files_no_project_reads_are_refused(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: website\nruntime: nodejs\n")
    with pytest.raises(ProjectNotFoundError) as caught:
        find_project_dir(tmp_path)
    message = str(caught.value)
    assert f"reads its stack files from {tmp_path}" in message
    assert str(tmp_path / "Pulumi.yaml") in message
    assert "--stacks-dir" in message


def test_no_backend_at_all_says_bootstrap_or_login(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULUMI_ACCESS_TOKEN", raising=False)
    with pytest.raises(NoStateBackendError) as caught:
        require_backend(BackendChoice("none", None, None), "dev")
    assert "`fermion bootstrap dev`" in str(caught.value)
    assert "`pulumi login`" in str(caught.value)


def test_a_pulumi_cloud_token_is_a_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_ACCESS_TOKEN", "pul-0123")
    choice = BackendChoice("none", None, None)
    assert require_backend(choice, "dev") is choice
