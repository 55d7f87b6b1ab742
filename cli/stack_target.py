"""What every stack command does before Pulumi runs: the checks, in order, then the stack.

1. The environment file is validated exactly as `fermion validate` reads it, so a bad file never
   reaches Pulumi.
2. The Pulumi project whose stackConfigDir holds that file is found.
3. The Pulumi CLI is on PATH and new enough for the SDK.
4. A state backend is chosen: PULUMI_BACKEND_URL, `pulumi login`, or `fermion bootstrap`'s.
5. AWS credentials are present and accepted (STS), when the operation reaches AWS.
6. The stack named after the environment is selected, or created for preview and up.

Each failure is a FermionError with its fix; the root group prints it and exits 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fermion.cli.options import stacks_folder

if TYPE_CHECKING:
    from pulumi.automation import Stack

    from fermion.environments.spec import EnvironmentSpec
    from fermion.stacks.aws_lookups import Identity
    from fermion.stacks.backend import BackendChoice


@dataclass(frozen=True)
class CheckedEnvironment:
    """An environment whose file passed validation: its name, folder, file and spec."""

    env: str
    folder: Path
    file: Path
    spec: EnvironmentSpec


@dataclass(frozen=True)
class OpenedStack:
    """The environment's Pulumi stack, ready to run, and what was checked to open it."""

    environment: CheckedEnvironment
    stack: Stack
    backend: BackendChoice
    identity: Identity | None

    def describe(self) -> str:
        """One line for people: the stack, the AWS account and the state backend."""
        from fermion.stacks.workspace import describe_backend

        spec = self.environment.spec
        parts = [f"stack {self.environment.env}", f"region {spec.region}"]
        if self.identity is not None:
            parts.append(f"account {self.identity.account} ({self.identity.arn})")
        parts.append(f"state {describe_backend(self.backend)}")
        return " · ".join(parts)


def check_environment(env: str, stacks_dir: Path | None) -> CheckedEnvironment:
    """Read and check `env`'s stack file, as `fermion validate ENV` does."""
    from fermion.environments.stack_files import read_stack_file, stack_file

    folder = stacks_folder(stacks_dir)
    path = stack_file(env, folder)
    spec = read_stack_file(path, env)
    return CheckedEnvironment(env, folder, path, spec)


def open_environment(
    checked: CheckedEnvironment, create: bool, aws: bool | None = True
) -> OpenedStack:
    """The stack of a checked environment, after the project, Pulumi CLI, backend and AWS
    credential checks. `aws` True checks credentials (the program reaches AWS); None checks them
    only when the backend itself is in AWS (an S3 bucket or a KMS secrets provider), as reading
    outputs needs. `create` makes the stack when it is missing."""
    from fermion.stacks.backend import choose_backend
    from fermion.stacks.credentials import require_aws_credentials
    from fermion.stacks.pulumi_cli import require_pulumi_cli
    from fermion.stacks.workspace import find_project_dir, open_stack, require_backend

    project = find_project_dir(checked.folder)
    pulumi = require_pulumi_cli()
    backend = require_backend(choose_backend(checked.env, checked.folder), checked.env)
    if aws is None:
        aws = _backend_in_aws(backend)
    identity = require_aws_credentials(checked.spec.region) if aws else None
    stack = open_stack(checked.env, project, pulumi, backend, create)
    return OpenedStack(checked, stack, backend, identity)


def _backend_in_aws(backend: BackendChoice) -> bool:
    url = backend.url or ""
    secrets = backend.secrets_provider or ""
    return url.startswith("s3://") or secrets.startswith("awskms://")
