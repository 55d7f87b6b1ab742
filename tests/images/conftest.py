"""A real Docker engine, a local registry and a base image, for the image tests.

Without an engine the tests are skipped, saying why; with FERMION_REQUIRE_DOCKER=1 (as `.ci/run`
sets) they fail instead, so CI never passes by skipping them. `.ci/docker-up` (as root) starts
what is missing; the tests never install or start anything themselves. Every build and container
uses the host network.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fermion.environments.errors import FermionError

REPO = Path(__file__).resolve().parents[2]
DOCKER_UP = REPO / ".ci" / "docker-up"
BASE_IMAGE = os.environ.get("FERMION_TEST_BASE_IMAGE", "fermion-ci/python:3.11-bookworm")
REGISTRY = os.environ.get("FERMION_TEST_REGISTRY", "127.0.0.1:5000")
MEASUREMENTS = REPO / "build" / "image-measurements.json"


def _unavailable(reason: str) -> None:
    if os.environ.get("FERMION_REQUIRE_DOCKER") == "1":
        pytest.fail(f"FERMION_REQUIRE_DOCKER=1, but {reason}")
    pytest.skip(f"image tests need a Docker engine: {reason}")


def _registry_answers() -> bool:
    try:
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@dataclass(frozen=True)
class Engine:
    """The docker client that builds (and so also runs, tags and pushes), and what it needs."""

    client: Path
    base_image: str
    registry: str

    def docker(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        done = subprocess.run(
            [str(self.client), *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout


@pytest.fixture(scope="session")
def engine() -> Engine:
    from fermion.cli.docker_build import usable_client

    def ready() -> bool:
        try:
            client = usable_client().path
        except FermionError:
            return False
        found = subprocess.run(
            [str(client), "image", "inspect", BASE_IMAGE], capture_output=True, check=False
        )
        return found.returncode == 0 and _registry_answers()

    try:
        client = usable_client().path
    except FermionError as exc:
        _unavailable(f"{exc} (as root, {DOCKER_UP} installs and starts one)")
        raise  # unreachable: _unavailable skips or fails
    if not ready():
        _unavailable(
            f"the base image {BASE_IMAGE} or the registry at {REGISTRY} is missing; run "
            f"{DOCKER_UP} as root"
        )
    return Engine(client, BASE_IMAGE, REGISTRY)


def _pip_config() -> dict[str, str]:
    """This machine's pip configuration (`pip config list`), as key = value."""
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
    )
    found: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        found[key.split(".", 1)[-1]] = value.strip().strip("'\"")
    return found


@dataclass(frozen=True)
class AirGapped:
    """The build options a user behind this network's proxy passes: pip's own sources from
    `pip config list` (a folder with the CPU torch wheel, local indexes) and its CA bundle,
    with a marker in the bundle so that a test can look for it in the image's layers."""

    options: tuple[str, ...]
    ca_marker: str


@pytest.fixture(scope="session")
def air_gapped(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> AirGapped:
    config = _pip_config()
    options: list[str] = ["--base", engine.base_image]
    for folder in config.get("find-links", "").split():
        options += ["--find-links", folder]
    for index in config.get("extra-index-url", "").split():
        options += ["--extra-index-url", index]
    if "index-url" in config:
        options += ["--index-url", config["index-url"]]
    marker = f"fermion-ca-marker-{os.getpid()}-{time.time_ns()}"
    bundle = tmp_path_factory.mktemp("ca") / "ca.pem"
    cert = config.get("cert", os.environ.get("PIP_CERT", ""))
    text = Path(cert).read_text() if cert and Path(cert).is_file() else ""
    # Text outside BEGIN/END blocks is ignored by OpenSSL: the marker changes no trust.
    bundle.write_text(f"{text}\n# {marker}\n")
    options += ["--ca-bundle", str(bundle)]
    return AirGapped(tuple(options), marker)


@dataclass
class Measurements:
    """Sizes and seconds the image tests saw, written to build/image-measurements.json."""

    values: dict[str, object] = field(default_factory=dict)

    def record(self, key: str, value: object) -> None:
        self.values[key] = value


@pytest.fixture(scope="session")
def measurements() -> Iterator[Measurements]:
    found = Measurements()
    started = time.monotonic()
    yield found
    found.record("image_tests_seconds", round(time.monotonic() - started, 1))
    MEASUREMENTS.parent.mkdir(exist_ok=True)
    MEASUREMENTS.write_text(json.dumps(found.values, indent=2, sort_keys=True) + "\n")
