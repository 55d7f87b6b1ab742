"""`fermion serve`: the server's own options, the image by device, one model config, a taken
port, and a ready line whose curl carries the token."""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import fermion.cli.serve as serve_module
from fermion.cli import app
from fermion.cli.serve import example_curl, image_for_device
from fermion.environments.shapes import CPU_IMAGE, CUDA_IMAGE
from fermion.runtime_images.server.config import ServerConfig
from fermion.runtime_images.server.options import OPTIONS

from ..runtime.conftest import free_port

runner = CliRunner()
TOKEN = "s3cret-t0ken"
SERVER = [sys.executable, "-m", "fermion.runtime_images.server"]
FERMION = Path(sys.executable).with_name("fermion")


@dataclass
class Started:
    folder: Path
    config: ServerConfig
    args: list[str]


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Started]:
    """Runs of `fermion serve` up to starting the server, which is recorded, not started."""
    runs: list[Started] = []

    def record(folder: Path, config: ServerConfig, args: list[str]) -> int:
        runs.append(Started(folder, config, args))
        return 0

    monkeypatch.setattr(serve_module, "_run", record)
    return runs


def _serving(run: Started) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run.folder / "serving.json").read_text())
    return data


def test_serve_offers_every_server_option_with_the_servers_help() -> None:
    command = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    params = {p.name: p for p in command.params}
    for option in OPTIONS:
        param = params[option.field]
        assert option.flag in param.opts, option.flag
        default = {"host": "127.0.0.1", "log_level": "warning"}.get(option.field)
        assert param.help == option.help_text(default)
    assert "--no-predict-thread" in params["predict_thread"].secondary_opts


def test_serve_hands_server_options_to_the_server_and_model_options_to_serving_json(
    tmp_path: Path, started: list[Started], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "m.pt"
    model.write_bytes(b"not loaded here")
    tokens = tmp_path / "tokens"
    tokens.write_text("t0k3n\n")
    monkeypatch.chdir(tmp_path)  # a relative token file resolves from here, not the context
    result = runner.invoke(
        app,
        [
            "serve", str(model), "--context", str(tmp_path / "ctx"),
            "--precision", "fp16", "--max-queue", "3", "--no-predict-thread",
            "--max-request-bytes", "2048", "--grace-period-s", "5", "--access-log",
            "--auth-token-file", "tokens", "--port", str(free_port()),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (run,) = started
    served = _serving(run)["models"][0]
    assert (served["precision"], served["max_queue"], served["predict_thread"]) == (
        "fp16",
        3,
        False,
    )
    args = run.args
    assert args[args.index("--max-request-bytes") + 1] == "2048"
    assert args[args.index("--grace-period-s") + 1] == "5.0"
    assert args[args.index("--auth-token-file") + 1] == str(tokens)
    assert "--access-log" in args and "--precision" not in args
    assert args[args.index("--host") + 1] == "127.0.0.1"
    assert run.config.auth_tokens == ("t0k3n",)


def test_serve_rejects_what_the_server_would_with_a_pointer_to_help(tmp_path: Path) -> None:
    model = tmp_path / "m.pt"
    model.write_bytes(b"")
    result = runner.invoke(app, ["serve", str(model), "--max-request-bytes", "10"])
    assert result.exit_code == 1
    assert "max_request_bytes must be at least 1024" in result.stderr
    assert "fermion serve --help" in result.stderr


def test_build_options_go_with_docker(tmp_path: Path) -> None:
    model = tmp_path / "m.pt"
    model.write_bytes(b"")
    for extra in (["--pip-package", "transformers"], ["--base", "python:3.11-slim"]):
        result = runner.invoke(app, ["serve", str(model), *extra])
        assert result.exit_code == 1
        assert "go with --docker" in result.stderr


def test_every_entrypoint_names_a_model_alike(tmp_path: Path, started: list[Started]) -> None:
    from fermion.runtime_images.server.__main__ import build_parser, config_from_args

    model = tmp_path / "my model.pt"
    model.write_bytes(b"")
    served = runner.invoke(app, ["serve", str(model), "--context", str(tmp_path / "s")])
    assert served.exit_code == 0, served.output
    out = tmp_path / "r"
    rendered = runner.invoke(
        app, ["image", "render", "--image", "torch-cpu", "--model", str(model), "-o", str(out)]
    )
    assert rendered.exit_code == 0, rendered.output
    entrypoint = config_from_args(build_parser().parse_args([str(model)]))
    names = {
        _serving(started[0])["models"][0]["name"],
        json.loads((tmp_path / "r" / "serving.json").read_text())["models"][0]["name"],
        entrypoint.models[0].name,
    }
    assert names == {"my-model"}


@pytest.mark.parametrize(
    ("device", "image"),
    [("cuda", CUDA_IMAGE), ("cuda:1", CUDA_IMAGE), ("cpu", CPU_IMAGE), ("auto", CPU_IMAGE)],
)
def test_serve_picks_the_image_by_device(
    device: str, image: str, tmp_path: Path, started: list[Started]
) -> None:
    assert image_for_device(device) == image
    model = tmp_path / "m.pt"
    model.write_bytes(b"")
    result = runner.invoke(app, ["serve", str(model), "--device", device])
    assert result.exit_code == 0, result.output
    assert f"in the {image} context" in result.stdout


def test_serve_on_a_taken_port_says_so_before_starting_anything(
    tmp_path: Path, started: list[Started]
) -> None:
    model = tmp_path / "m.pt"
    model.write_bytes(b"")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = runner.invoke(app, ["serve", str(model), "--port", str(port)])
    assert result.exit_code == 1
    assert not started
    assert not re.search(r"\bready\b", result.stdout)
    (line,) = result.stderr.strip().splitlines()
    assert f"port {port} is already in use" in line and "--port" in line


def test_the_server_on_a_taken_port_says_so_in_one_line_and_exits_1(
    models: dict[str, Path],
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = subprocess.run(
            [*SERVER, str(models["affine"]), "--host", "127.0.0.1", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert f"port {port} is already in use on 127.0.0.1; pick another with --port" in line
    assert not re.search(r"\bready\b", done.stdout + done.stderr)


@pytest.mark.parametrize("elements", [4, 64], ids=["inline", "piped"])
def test_the_example_curl_sends_the_token_by_variable(elements: int) -> None:
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, elements]}]
    plain = example_curl("http://localhost:1", "m", inputs)
    assert "Authorization" not in plain
    with_token = example_curl("http://localhost:1", "m", inputs, auth=True)
    assert '-H "Authorization: Bearer $FERMION_TOKEN"' in with_token


@dataclass
class Serving:
    process: subprocess.Popen[str]
    port: int
    lines: list[str]


def _serve_affine(models: dict[str, Path]) -> list[str]:
    return [str(FERMION), "serve", str(models["affine"]), "--input", "input__0:FP32:-1,4"]


def _lines_until(process: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    """The output up to the line that starts with `marker`; the rest is read and dropped."""
    assert process.stdout is not None
    stdout = process.stdout
    read: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stdout:
            read.put(line)
        read.put("")  # the end of the output

    threading.Thread(target=pump, daemon=True).start()
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = read.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no {marker!r} line in {timeout} s:\n{''.join(lines)}") from None
        assert line, f"fermion serve exited before {marker!r}:\n{''.join(lines)}"
        lines.append(line)
        if line.lstrip().startswith(marker):
            return lines


@pytest.fixture(scope="module")
def served(models: dict[str, Path]) -> Iterator[Serving]:
    """A real `fermion serve`, ready, whose server wants the token in $FERMION_AUTH_TOKENS."""
    port = free_port()
    process = subprocess.Popen(
        [*_serve_affine(models), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "400", "FERMION_AUTH_TOKENS": TOKEN},
    )
    try:
        yield Serving(process, port, _lines_until(process, "Press Ctrl-C", timeout=120))
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_ready_curl_carries_the_token_from_a_variable(served: Serving) -> None:
    output = "".join(served.lines)
    assert TOKEN not in output
    infer = next(line for line in served.lines if line.strip().startswith("infer:"))
    command = re.sub(r"^\s*infer:\s*", "", infer).strip()
    assert '-H "Authorization: Bearer $FERMION_TOKEN"' in command
    env = {**os.environ, "FERMION_TOKEN": TOKEN}
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60, env=env)
    assert '"model_name":"affine"' in done.stdout, done.stdout + done.stderr
    refused = subprocess.run(
        command, shell=True, capture_output=True, text=True, timeout=60,
        env={**os.environ, "FERMION_TOKEN": "wrong"},
    )  # fmt: skip
    assert '"model_name"' not in refused.stdout


def test_a_second_serve_on_the_same_port_reports_nothing_ready(
    served: Serving, models: dict[str, Path]
) -> None:
    done = subprocess.run(
        [*_serve_affine(models), "--port", str(served.port)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert not re.search(r"\bready\b", done.stdout) and "curl" not in done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert f"port {served.port} is already in use" in line
    assert "--port" in line
