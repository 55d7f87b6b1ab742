"""A real moto server process, reached over HTTP like AWS itself."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..runtime.conftest import free_port


def start_moto(
    log: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """A moto_server process on a free loopback port, once it accepts connections."""
    port = free_port()
    server = Path(sys.executable).with_name("moto_server")
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(extra_env or {})},
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"moto_server did not start:\n{log.read_text()}")


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment variables that point boto3 at a moto server on loopback."""
    process, port = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    yield env
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def s3(moto: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    import boto3

    for key, value in moto.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return boto3.client("s3", region_name="us-east-1")


def environ_with(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **extra}
