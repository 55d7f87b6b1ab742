"""The docker command that builds a rendered context, with what this machine has.

The rendered Dockerfile needs BuildKit (`RUN --mount=type=cache`). A docker client reaches
BuildKit one of two ways:
- `docker buildx build`, where the buildx plugin is installed;
- `docker build` with DOCKER_BUILDKIT=1, from a client older than Docker 23, which drives the
  engine's own BuildKit itself (Debian's docker.io 20.10 does). From 23 on, the client hands
  every BuildKit build to buildx and fails without it.
Every `docker` on PATH is tried in order, so a newer client without buildx that shadows an
older one that can build does not stop the build.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fermion.environments.errors import FermionError

# The first Docker release whose `docker build` needs the buildx plugin for BuildKit.
_BUILDX_ONLY_SINCE = 23
_VERSION = re.compile(r"version (\d+)\.")


class NoDockerError(FermionError):
    """There is no Docker engine to build with."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"no Docker engine is available ({detail}). Install Docker and start its engine "
            "(Debian and Ubuntu: apt-get install docker.io), or build the rendered context "
            "elsewhere: `fermion image render ... -o DIR`, then `docker buildx build DIR`"
        )


class NoBuildKitClientError(FermionError):
    """A Docker engine runs, but no docker client here can build with BuildKit."""

    def __init__(self, clients: Mapping[str, str]) -> None:
        found = "; ".join(f"{path} ({version})" for path, version in clients.items())
        super().__init__(
            f"no docker client here can build with BuildKit, which the Dockerfile needs: {found} "
            f"has no buildx plugin, and since Docker {_BUILDX_ONLY_SINCE} `docker build` "
            "needs it. Install the buildx plugin (Debian and Ubuntu: apt-get install "
            "docker-buildx; Docker's own packages: docker-buildx-plugin), or put a docker "
            f"client older than {_BUILDX_ONLY_SINCE} first on PATH (Debian bookworm's docker.io)"
        )


@dataclass(frozen=True)
class BuildCommand:
    """The command line that builds a context, and the environment it adds. `client` is the
    docker client it runs, which also tags, pushes and runs what it built."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def client(self) -> Path:
        return Path(self.argv[0])

    def __str__(self) -> str:
        prefix = "".join(f"{k}={v} " for k, v in self.env.items())
        return prefix + " ".join(self.argv)


def docker_clients(search_path: str | None = None) -> list[Path]:
    """Every `docker` executable on PATH, in PATH order, each file once."""
    found: list[Path] = []
    seen: set[Path] = set()
    folders = (search_path if search_path is not None else os.environ.get("PATH", "")).split(
        os.pathsep
    )
    for folder in folders:
        candidate = Path(folder or ".") / "docker"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            real = candidate.resolve()
            if real not in seen:
                seen.add(real)
                found.append(candidate)
    return found


def build_command(
    reference: str,
    context: Path,
    *,
    secrets: Mapping[str, Path] | None = None,
    build_args: Mapping[str, str] | None = None,
) -> BuildCommand:
    """How to build `context` into the engine as `reference`, with BuildKit `secrets` (id to
    file) and `build_args`; raises NoDockerError when no engine runs, NoBuildKitClientError
    when no client can build with BuildKit.

    Builds run on the host network: the engine may have no bridge, and package sources served
    on this machine's loopback must be reachable from the build's steps.
    """
    options: list[str] = ["--network", "host"]
    for secret, path in sorted((secrets or {}).items()):
        options += ["--secret", f"id={secret},src={path}"]
    for name, value in sorted((build_args or {}).items()):
        options += ["--build-arg", f"{name}={value}"]
    client = usable_client()
    if client.buildx:
        return BuildCommand(
            (
                str(client.path),
                "buildx",
                "build",
                "--tag",
                reference,
                "--load",
                "--allow",
                "network.host",
                *options,
                str(context),
            )
        )
    return BuildCommand(
        (str(client.path), "build", "--tag", reference, *options, str(context)),
        {"DOCKER_BUILDKIT": "1"},
    )


@dataclass(frozen=True)
class DockerClient:
    """A docker client that can build with BuildKit: with the buildx plugin, or by itself."""

    path: Path
    buildx: bool


def usable_client() -> DockerClient:
    """The first docker client on PATH that can build with BuildKit, once an engine answers."""
    clients = docker_clients()
    if not clients:
        raise NoDockerError("the docker command is not on PATH")
    probe = _run(clients[0], "info", "--format", "{{.ServerVersion}}")
    if probe.returncode != 0:
        raise NoDockerError((probe.stderr.strip().splitlines() or ["docker info failed"])[-1])
    versions: dict[str, str] = {}
    for client in clients:
        if _run(client, "buildx", "version").returncode == 0:
            return DockerClient(client, buildx=True)
        version = _run(client, "--version").stdout.strip()
        versions[str(client)] = version or "no version"
        major = _VERSION.search(version)
        if major is not None and int(major.group(1)) < _BUILDX_ONLY_SINCE:
            return DockerClient(client, buildx=False)
    raise NoBuildKitClientError(versions)


def _run(client: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(client), *args], capture_output=True, text=True, check=False, timeout=60
    )


__all__ = [
    "BuildCommand",
    "DockerClient",
    "NoBuildKitClientError",
    "NoDockerError",
    "build_command",
    "docker_clients",
    "usable_client",
]
