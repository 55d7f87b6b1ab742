"""`fermion serve --docker`: the runtime image itself, run on this machine.

The image is the one `fermion image build` makes from the same context (built here when the
engine lacks it), with its own entrypoint (tini, then the server) and its own serving.json, as a
pod runs it. Two things differ from the cluster: the model is mounted read-only from this
machine (or fetched from its s3:// URI, as a pod would), and the server listens on the port
given here. The container shares the host's network: it gets no address of its own.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fermion.cli.build_sources import BuildSources
from fermion.cli.docker_build import usable_client
from fermion.cli.docker_image import BuiltImage, build, inspect
from fermion.runtime_images.render import MODEL_URI_VARIABLE, RenderedContext

MODEL_MOUNT = "/srv/fermion/model"
TOKEN_FILE_MOUNT = "/run/fermion/auth-tokens"
LOCAL_REPOSITORY = "fermion-local"
# Passed through to the container when set here: credentials and settings for an s3:// model.
_PASSED_VARIABLES = (
    "FERMION_AUTH_TOKENS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CA_BUNDLE",
)


@dataclass(frozen=True)
class ModelSource:
    """Where the container finds its model: a file or folder here, mounted, or a URI."""

    local: Path | None = None
    uri: str | None = None

    def in_container(self) -> str:
        if self.local is None:
            return self.uri if self.uri is not None else ""
        return f"{MODEL_MOUNT}/{self.local.name}" if self.local.is_file() else MODEL_MOUNT

    def mount(self) -> list[str]:
        if self.local is None:
            return []
        return ["--volume", f"{self.local.resolve()}:{self.in_container()}:ro"]


def image_for(context: RenderedContext, sources: BuildSources, scratch: Path) -> BuiltImage:
    """The local image of `context` (fermion-local:<tag>): the engine's, else built now."""
    reference = f"{LOCAL_REPOSITORY}:{context.tag}"
    client = usable_client().path
    found = inspect(client, reference)
    if found:
        return BuiltImage(reference, context.tag, str(found["Id"]), int(found["Size"]), 0.0, client)
    return build(context, LOCAL_REPOSITORY, sources, scratch)


def run_command(
    image: BuiltImage,
    model: ModelSource,
    server_args: Sequence[str],
    *,
    token_file: Path | None = None,
    port: int,
    grace_period_s: float,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """The `docker run` that serves `image` as a pod does: its entrypoint and CMD, then the
    server options given here (the port, say), which the server reads after serving.json."""
    found = inspect(image.client, image.reference)
    config = found.get("Config")
    command = config.get("Cmd") if isinstance(config, dict) else None
    env = os.environ if environ is None else environ
    argv = [
        str(image.client),
        "run",
        "--rm",
        "--network",
        "host",
        # docker stop waits this long before SIGKILL: the server's own grace, and a little.
        "--stop-timeout",
        str(int(grace_period_s) + 5),
        "--env",
        f"{MODEL_URI_VARIABLE}={model.in_container()}",
        # The image's HEALTHCHECK asks the port the server listens on.
        "--env",
        f"FERMION_PORT={port}",
        *model.mount(),
    ]
    for name in _PASSED_VARIABLES:
        if name in env:
            argv += ["--env", name]
    args = list(server_args)
    if token_file is not None:
        argv += ["--volume", f"{token_file.resolve()}:{TOKEN_FILE_MOUNT}:ro"]
        args += ["--auth-token-file", TOKEN_FILE_MOUNT]
    return [*argv, image.reference, *(command if isinstance(command, list) else []), *args]


def start(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start the container attached: docker passes the signals it gets on to the container."""
    # Its own session: a Ctrl-C reaches fermion serve, which passes it on once.
    return subprocess.Popen(list(argv), start_new_session=True)


__all__ = ["LOCAL_REPOSITORY", "MODEL_MOUNT", "ModelSource", "image_for", "run_command", "start"]
