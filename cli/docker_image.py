"""Building a rendered context into the local engine, and pushing it, with a docker client.

`fermion image build` and `fermion serve --docker` both come through here, so what serve runs
is exactly what a build makes, tagged with the same content hash.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fermion.cli.build_sources import BuildSources, prepared
from fermion.cli.docker_build import build_command
from fermion.environments.errors import FermionError
from fermion.runtime_images.render import RenderedContext


class DockerCommandError(FermionError):
    """A docker command that failed; its own output, shown above, says why."""

    def __init__(self, what: str, code: int, hint: str) -> None:
        super().__init__(f"{what} failed (docker exited {code}; its output is above). {hint}")


@dataclass(frozen=True)
class BuiltImage:
    """An image in the local engine: its reference (repository:content tag), id and size."""

    reference: str
    tag: str
    image_id: str
    size_bytes: int
    build_seconds: float
    client: Path


@dataclass(frozen=True)
class PushedImage:
    """An image in a registry, by tag and by digest (what a deployment should run)."""

    reference: str
    digest_reference: str


def build(
    context: RenderedContext,
    repository: str,
    sources: BuildSources,
    scratch: Path,
    *,
    echo: bool = True,
) -> BuiltImage:
    """Build `context` as `repository:<its tag>`, with the air-gapped `sources`."""
    reference = f"{repository}:{context.tag}"
    with prepared(sources, context.image, scratch / "secrets") as secrets:
        command = build_command(
            reference, context.path, secrets=secrets.secrets, build_args=secrets.build_args
        )
        if echo:
            for line in secrets.served:
                _say(f"serving {line} to the build")
            _say(f"building {reference} from {context.image}: {command}")
        started = time.monotonic()
        code = _stream([*command.argv], {**os.environ, **command.env})
        seconds = time.monotonic() - started
    if code != 0:
        raise DockerCommandError(
            f"building {reference}",
            code,
            "An air-gapped or proxied build takes --base, --index-url, --find-links and "
            "--ca-bundle (fermion image build --help)",
        )
    found = inspect(command.client, reference)
    return BuiltImage(
        reference,
        context.tag,
        str(found["Id"]),
        int(found["Size"]),
        seconds,
        command.client,
    )


def push(image: BuiltImage, repository: str) -> PushedImage:
    """Tag `image` into `repository` (a registry's repository, with no tag) and push it."""
    if "@" in repository or ":" in repository.rsplit("/", 1)[-1]:
        raise DockerCommandError(
            f"pushing to {repository}",
            2,
            "Give --push a repository without a tag or digest (registry.example.com/team/name): "
            "the tag is the content hash",
        )
    target = f"{repository}:{image.tag}"
    _docker(image.client, "tag", image.reference, target)
    code = _stream([str(image.client), "push", target], dict(os.environ))
    if code != 0:
        raise DockerCommandError(
            f"pushing {target}",
            code,
            "Log in to the registry first (docker login REGISTRY); a registry over plain HTTP "
            "must be in the engine's insecure-registries unless it is on 127.0.0.0/8",
        )
    digests = inspect(image.client, target).get("RepoDigests") or []
    digest = next((d for d in digests if str(d).startswith(f"{repository}@")), None)
    if digest is None:
        raise DockerCommandError(f"reading the digest of {target}", 1, "Push it again")
    return PushedImage(target, str(digest))


def inspect(client: Path, reference: str) -> dict[str, Any]:
    """`docker image inspect` of one image, as a mapping; {} when the engine lacks it."""
    done = subprocess.run(
        [str(client), "image", "inspect", reference],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        return {}
    found: list[dict[str, Any]] = json.loads(done.stdout)
    return found[0] if found else {}


def _docker(client: Path, *args: str) -> str:
    done = subprocess.run(
        [str(client), *args], capture_output=True, text=True, check=False, timeout=120
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise DockerCommandError(f"docker {args[0]}", done.returncode, "See the message above")
    return done.stdout


def _stream(argv: list[str], env: dict[str, str]) -> int:
    """Run a docker command with its output passed on to stderr, so stdout stays the result."""
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    ) as process:
        for line in process.stdout or ():
            sys.stderr.write(line)
        return process.wait()


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")


__all__ = ["BuiltImage", "DockerCommandError", "PushedImage", "build", "inspect", "push"]
