"""The Pulumi stack of an environment, opened through the Automation API.

A LocalWorkspace on the project folder (the folder of fermion's `Pulumi.yaml`), the stack named
after the environment, and the state backend `choose_backend` picks. The stack's settings are
not copied anywhere: the Pulumi CLI reads `Pulumi.<env>.yaml` itself, from the project's
`stackConfigDir`. (The workspace's own `stack_settings()` looks in the project folder only, so
fermion never calls it.) That is why the project must be the one whose `stackConfigDir` is the
folder the environment was validated from: otherwise Pulumi would run a different file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from fermion.environments.errors import FermionError
from fermion.stacks import STACKS_DIR

if TYPE_CHECKING:
    from pulumi.automation import PulumiCommand, Stack

    from fermion.stacks.backend import BackendChoice

__all__ = [
    "NoStateBackendError",
    "ProjectNotFoundError",
    "StackNotDeployedError",
    "describe_backend",
    "find_project_dir",
    "open_stack",
    "require_backend",
]

PROJECT_NAME = "fermion"
# Pulumi Cloud needs no `pulumi login` when a token is in the environment.
_ACCESS_TOKEN_ENV = "PULUMI_ACCESS_TOKEN"


class ProjectNotFoundError(FermionError):
    """No fermion Pulumi.yaml whose stackConfigDir is the folder of the environment's file."""

    def __init__(self, stacks_dir: Path, looked_in: list[Path]) -> None:
        self.stacks_dir = stacks_dir
        places = ", ".join(str(p) for p in looked_in)
        super().__init__(
            f"no fermion Pulumi project reads its stack files from {stacks_dir}: stack "
            f"operations run the Pulumi project whose Pulumi.yaml (name: {PROJECT_NAME}) has "
            f"that folder as its stackConfigDir, and none does (looked in {places}). Run from a "
            "clone of fermion and keep Pulumi.<env>.yaml in its stacks/ folder, or point "
            "--stacks-dir (or $FERMION_STACKS_DIR) at that folder"
        )


class NoStateBackendError(FermionError):
    """Neither the user nor `fermion bootstrap` chose where the stack's state lives."""

    def __init__(self, env: str) -> None:
        self.env = env
        super().__init__(
            f"no state backend for environment {env!r}: run `fermion bootstrap {env}` to make an "
            "S3 bucket and KMS key for Pulumi state in your AWS account, or choose a backend "
            "yourself with `pulumi login` (or PULUMI_BACKEND_URL)"
        )


class StackNotDeployedError(FermionError):
    """The stack does not exist in the backend: nothing has been deployed there."""

    def __init__(self, env: str, backend: str) -> None:
        self.env = env
        super().__init__(
            f"stack {env!r} does not exist in the state backend {backend}: nothing has been "
            f"deployed there. Run `fermion up {env}` to create it, or check that this is the "
            "backend it was deployed with (PULUMI_BACKEND_URL, `pulumi login`, "
            "`fermion bootstrap`)"
        )


def find_project_dir(stacks_dir: Path, packaged: Path | None = None) -> Path:
    """The folder of the fermion Pulumi.yaml whose stackConfigDir is `stacks_dir`: the folder
    itself or one above it, else `packaged` (default: the project fermion ships beside
    `fermion.stacks`)."""
    target = stacks_dir.resolve()
    candidates = [target, *target.parents]
    shipped = (STACKS_DIR.parent if packaged is None else packaged).resolve()
    if shipped not in candidates:
        candidates.append(shipped)
    looked_in = []
    for folder in candidates:
        project = folder / "Pulumi.yaml"
        if not project.is_file():
            continue
        looked_in.append(project)
        if _config_dir(project) == target:
            return folder
    raise ProjectNotFoundError(stacks_dir, looked_in or [c / "Pulumi.yaml" for c in candidates])


def _config_dir(project: Path) -> Path | None:
    try:
        data = yaml.safe_load(project.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(data, dict) or data.get("name") != PROJECT_NAME:
        return None
    config_dir = data.get("stackConfigDir")
    return (project.parent / (config_dir if isinstance(config_dir, str) else ".")).resolve()


def require_backend(choice: BackendChoice, env: str) -> BackendChoice:
    """`choice`, unless it is no backend at all (and no Pulumi Cloud token either)."""
    if choice.url is None and not os.environ.get(_ACCESS_TOKEN_ENV):
        raise NoStateBackendError(env)
    return choice


def open_stack(
    env: str,
    project_dir: Path,
    pulumi: PulumiCommand,
    backend: BackendChoice,
    create: bool,
) -> Stack:
    """The stack `env` of the project in `project_dir`, in `backend`: created when `create` and
    it does not exist yet, else StackNotDeployedError."""
    from pulumi.automation import LocalWorkspace, Stack
    from pulumi.automation.errors import StackNotFoundError

    workspace = LocalWorkspace(
        work_dir=str(project_dir),
        pulumi_command=pulumi,
        env_vars={**backend.env_vars(), "PULUMI_SKIP_UPDATE_CHECK": "true"},
        # Used only when the stack is created; an existing stack keeps the provider it has.
        secrets_provider=backend.secrets_provider,
    )
    if create:
        return Stack.create_or_select(env, workspace)
    try:
        return Stack.select(env, workspace)
    except StackNotFoundError:
        raise StackNotDeployedError(env, describe_backend(backend)) from None


def describe_backend(backend: BackendChoice) -> str:
    """The backend in a few words, Pulumi Cloud by token included."""
    if backend.url is None and os.environ.get(_ACCESS_TOKEN_ENV):
        return f"Pulumi Cloud (from {_ACCESS_TOKEN_ENV})"
    return backend.describe()
