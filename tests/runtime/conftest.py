"""A real server process per test module, and a small HTTP client for it."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SERVER = "fermion.runtime_images.server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        try:
            conn.request(method, path, body=data, headers=headers or {})
            answer = conn.getresponse()
            return Response(answer.status, dict(answer.getheaders()), answer.read())
        finally:
            conn.close()

    def infer(self, model: str, body: dict[str, Any], **kwargs: Any) -> Response:
        return self.request("POST", f"/v2/models/{model}/infer", body, **kwargs)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(
    args: list[str],
    log_dir: Path,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    python: str | Path = sys.executable,
    module: str = SERVER,
    cwd: Path | None = None,
    ready_timeout: float = 60,
) -> Server:
    """Start `python -m module ARGS` on a free loopback port, logging to a file in `log_dir`.

    The child gets a clean import path (no PYTHONPATH or VIRTUAL_ENV), so it sees only what
    `python`'s own environment holds.
    """
    port = free_port()
    log = log_dir / f"server-{port}.log"
    command = [str(python), "-m", module, *args, "--host", "127.0.0.1", "--port", str(port)]
    inherited = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**inherited, "OMP_NUM_THREADS": "1", **(env or {})},
        )
    server = Server(process, port, log)
    if wait_ready:
        wait_until_ready(server, timeout=ready_timeout)
    return server


def wait_until_ready(server: Server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited early:\n{server.output()}")
        try:
            if server.request("GET", "/v2/health/ready", timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    server.stop()
    raise AssertionError(f"server not ready after {timeout} s:\n{server.output()}")


@pytest.fixture(scope="module")
def affine(models: dict[str, Path], logs: Path) -> Iterator[Server]:
    server = start_server(
        [
            str(models["affine"]),
            "--input",
            "input__0:FP32:-1,4",
            "--max-batch-size",
            "16",
            "--max-delay-ms",
            "20",
            "--max-request-bytes",
            "65536",
        ],
        logs,
    )
    yield server
    server.stop()


def v2_input(
    name: str, data: list[Any], shape: list[int], datatype: str = "FP32"
) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}
