"""Batching, limits, failures, auth and shutdown, against real server processes."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import Server, start_server, v2_input, wait_until_ready


def _batch_histogram(server: Server, model: str) -> tuple[float, float]:
    text = server.request("GET", "/metrics").body.decode()
    total = re.search(rf'fermion_batch_size_sum{{model="{model}"}} ([0-9.]+)', text)
    count = re.search(rf'fermion_batch_size_count{{model="{model}"}} ([0-9.]+)', text)
    if total is None or count is None:  # no batch yet
        return 0.0, 0.0
    return float(total.group(1)), float(count.group(1))


def test_concurrent_requests_share_a_batch_and_get_their_own_rows(
    models: dict[str, Path], logs: Path
) -> None:
    server = start_server(
        [str(models["slow_affine"]), "--name", "affine", "--input", "input__0:FP32:-1,4",
         "--max-batch-size", "16", "--predict-thread"],
        logs,
    )  # fmt: skip

    def one(i: int) -> list[float]:
        rows = [[i, i, i, i]] * (1 + i % 3)  # requests of 1 to 3 samples
        body = {"inputs": [v2_input("input__0", rows, [len(rows), 4])]}
        answer = server.infer("affine", body)
        assert answer.status == 200, answer.body
        data: list[float] = answer.json()["outputs"][0]["data"]
        return data

    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(one, range(96)))
        samples, batches = _batch_histogram(server, "affine")
    finally:
        server.stop()
    for i, data in enumerate(results):
        assert data == [2 * i + 1] * 4 * (1 + i % 3)  # each answer holds its own rows
    assert samples == sum(1 + i % 3 for i in range(96))  # warm-up is not counted
    assert batches < 96 / 2  # requests that arrived together ran together


def test_torch_export_and_two_input_models(models: dict[str, Path], logs: Path) -> None:
    exported = start_server([str(models["mlp_export"]), "--name", "mlp"], logs)
    try:
        meta = exported.request("GET", "/v2/models/mlp").json()
        assert meta["platform"] == "pytorch_export"
        assert meta["inputs"] == [{"name": "input__0", "datatype": "FP32", "shape": [-1, 8]}]
        answer = exported.infer("mlp", {"inputs": [v2_input("input__0", [0.5] * 16, [2, 8])]})
        assert answer.status == 200 and answer.json()["outputs"][0]["shape"] == [2, 3]
    finally:
        assert exported.stop() == 0
    heads = start_server(
        [
            str(models["two_heads"]),
            "--input",
            "input__0:FP32:-1,1",
            "--input",
            "input__1:FP32:-1,3",
        ],
        logs,
    )
    try:
        body = {
            "inputs": [
                v2_input("input__0", [1, 2], [2, 1]),
                v2_input("input__1", [1, 1, 1, 2, 2, 2], [2, 3]),
            ]
        }
        out = {o["name"]: o for o in heads.infer("two_heads", body).json()["outputs"]}
        assert out["output__0"]["data"] == [4, 8]
        assert out["output__1"]["datatype"] == "INT64"
        mismatch = {
            "inputs": [
                v2_input("input__0", [1], [1, 1]),
                v2_input("input__1", [1, 1, 1, 2, 2, 2], [2, 3]),
            ]
        }
        assert (
            "disagree on the batch dimension" in heads.infer("two_heads", mismatch).json()["error"]
        )
    finally:
        heads.stop()


def test_a_model_error_gives_500_and_the_server_keeps_serving(
    models: dict[str, Path], logs: Path
) -> None:
    server = start_server(
        [
            str(models["handlers"]),
            "--handler",
            "handlers.py:Flaky",
            "--name",
            "flaky",
            "--max-batch-size",
            "1",
        ],
        logs,
    )
    try:
        bad = server.infer("flaky", {"inputs": [v2_input("x", [13.0], [1])]})
        assert bad.status == 500
        assert "RuntimeError: unlucky number" in bad.json()["error"]
        good = server.infer("flaky", {"inputs": [v2_input("x", [2.0], [1])]})
        assert good.status == 200 and good.json()["outputs"][0]["data"] == [4.0]
    finally:
        server.stop()


def test_timeout_gives_504(models: dict[str, Path], logs: Path) -> None:
    server = start_server(
        [
            str(models["handlers"]),
            "--handler",
            "handlers.py:Slow",
            "--name",
            "slow",
            "--timeout-s",
            "0.5",
            "--predict-thread",
        ],
        logs,
    )
    try:
        answer = server.infer("slow", {"inputs": [v2_input("x", [-1.0], [1])]})
        assert answer.status == 504
        assert "did not finish within 0.5 s" in answer.json()["error"]
        time.sleep(1.6)  # the timed-out batch still holds the model until it finishes
        quick = server.infer("slow", {"inputs": [v2_input("x", [1.0], [1])]})
        assert quick.status == 200
    finally:
        server.stop()


def test_a_full_queue_gives_429_with_retry_after(models: dict[str, Path], logs: Path) -> None:
    server = start_server(
        [
            str(models["handlers"]),
            "--handler",
            "handlers.py:Slow",
            "--name",
            "slow",
            "--max-queue",
            "1",
            "--max-batch-size",
            "1",
            "--predict-thread",
        ],
        logs,
    )
    try:
        with ThreadPoolExecutor(6) as pool:
            answers = list(
                pool.map(
                    lambda _: server.infer("slow", {"inputs": [v2_input("x", [1.0], [1])]}),
                    range(6),
                )
            )
        codes = sorted(a.status for a in answers)
        assert 200 in codes and 429 in codes, codes
        refused = next(a for a in answers if a.status == 429)
        assert refused.headers.get("retry-after") == "1"
        assert "retry after a second" in refused.json()["error"]
    finally:
        server.stop()


def test_bearer_tokens(models: dict[str, Path], logs: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("file-token\n")
    server = start_server(
        [
            str(models["affine"]),
            "--input",
            "input__0:FP32:-1,4",
            "--auth-token-file",
            str(token_file),
        ],
        logs,
        env={"FERMION_AUTH_TOKENS": "env-token"},
    )
    body = {"inputs": [v2_input("input__0", [1, 2, 3, 4], [1, 4])]}
    try:
        assert server.request("GET", "/v2/health/ready").status == 200  # probes stay open
        denied = server.infer("affine", body)
        assert denied.status == 401 and denied.headers.get("www-authenticate") == "Bearer"
        assert server.infer("affine", body, headers={"Authorization": "Bearer wrong"}).status == 401
        for token in ("env-token", "file-token"):
            ok = server.infer("affine", body, headers={"Authorization": f"Bearer {token}"})
            assert ok.status == 200
        assert server.request("GET", "/v2/models/affine").status == 401
    finally:
        server.stop()


def test_sigterm_drains_in_flight_requests_then_exits_0(
    models: dict[str, Path], logs: Path
) -> None:
    server = start_server(
        [
            str(models["handlers"]),
            "--handler",
            "handlers.py:Slow",
            "--name",
            "slow",
            "--max-batch-size",
            "4",
            "--predict-thread",
            "--grace-period-s",
            "20",
        ],
        logs,
    )
    body = {"inputs": [v2_input("x", [1.0], [1])]}
    with ThreadPoolExecutor(8) as pool:
        in_flight = [pool.submit(server.infer, "slow", body) for _ in range(8)]
        time.sleep(0.2)  # let them arrive
        gauges = server.request("GET", "/metrics").body.decode()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        ready = server.request("GET", "/v2/health/ready")
        late = server.infer("slow", body)
        answers = [f.result() for f in in_flight]
    in_flight = re.search(r'fermion_in_flight\{model="slow"\} (\d+)', gauges)
    assert in_flight is not None and int(in_flight.group(1)) >= 1
    assert ready.status == 503
    assert "shutting down" in ready.json()["error"]
    assert late.status == 200  # served: it reached the server before the listener closed
    assert [a.status for a in answers] == [200] * 8  # no request lost
    assert all(a.json()["outputs"][0]["data"] == [2.0] for a in [*answers, late])
    assert server.process.wait(timeout=30) == 0


def test_a_model_that_fails_to_load_exits_1(models: dict[str, Path], logs: Path) -> None:
    server = start_server(
        [str(models["handlers"]), "--handler", "handlers.py:BadLoad", "--name", "bad"],
        logs,
        wait_ready=False,
    )
    assert server.process.wait(timeout=60) == 1
    assert "weights.bin is missing" in server.output()
    assert "Traceback" not in server.output().split("cannot serve model")[-1]


@pytest.mark.parametrize(
    ("model", "args", "fragments"),
    [
        (
            "linear4",
            ["--input", "input__0:FP32:-1,5"],
            ["input__0:FP32:-1,5", "mat1 and mat2 shapes cannot be multiplied (1x5 and 4x3)"],
        ),
        ("handlers", ["--handler", "handlers.py:BadWarmUp", "--name", "linear4"], ["KeyError"]),
    ],
    ids=["shape-mismatch", "handler-raises"],
)
def test_a_model_that_fails_warm_up_exits_1_with_one_line(
    models: dict[str, Path], logs: Path, model: str, args: list[str], fragments: list[str]
) -> None:
    server = start_server([str(models[model]), *args], logs, wait_ready=False)
    try:
        assert server.process.wait(timeout=30) == 1
    finally:
        server.stop()
    output = server.output()
    (line,) = [line for line in output.splitlines() if "ERROR" in line]
    assert "cannot serve model 'linear4'" in line
    for fragment in fragments:
        assert fragment in line
    assert "Traceback" not in output and "never retrieved" not in output


def test_not_a_torchscript_file_exits_1_with_the_fix(models: dict[str, Path], logs: Path) -> None:
    server = start_server(
        [str(models["mlp_state"]), "--input", "input__0:FP32:-1,8"], logs, wait_ready=False
    )
    assert server.process.wait(timeout=60) == 1
    assert "is not a TorchScript archive" in server.output()
    assert "torch.jit.script(model).save(path)" in server.output()


def test_torchscript_without_inputs_is_refused(models: dict[str, Path], logs: Path) -> None:
    server = start_server([str(models["affine"])], logs, wait_ready=False)
    assert server.process.wait(timeout=60) == 1
    assert "--input input__0:FP32:-1,256" in server.output()


def test_bad_options_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fermion.runtime_images.server", "m.pt", "--input", "x:FP33:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "datatype 'FP33' is not one of" in done.stderr
    assert "Traceback" not in done.stderr


def test_workers_share_the_port(models: dict[str, Path], logs: Path) -> None:
    server = start_server(
        [str(models["affine"]), "--input", "input__0:FP32:-1,4", "--workers", "2"], logs
    )
    try:
        wait_until_ready(server)
        for _ in range(10):
            answer = server.infer("affine", {"inputs": [v2_input("input__0", [1] * 4, [1, 4])]})
            assert answer.status == 200
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("flag", ["--max-batch-size", "--port"])
def test_out_of_range_numbers_exit_2(flag: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fermion.runtime_images.server", "m.pt", flag, "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr


@pytest.mark.parametrize(("precision", "datatype"), [("fp16", "FP16"), ("bf16", "FP32")])
def test_half_precision(models: dict[str, Path], logs: Path, precision: str, datatype: str) -> None:
    # FP32 inputs are cast for the model; BF16 outputs widen to FP32 in JSON (JSON has no bf16).
    server = start_server(
        [str(models["affine"]), "--input", "input__0:FP32:-1,4", "--precision", precision], logs
    )
    try:
        answer = server.infer("affine", {"inputs": [v2_input("input__0", [1, 2, 3, 4], [1, 4])]})
        out = answer.json()["outputs"][0]
        assert out["datatype"] == datatype
        assert out["data"] == [3, 5, 7, 9]
    finally:
        server.stop()


def _listener_holders(port: int) -> set[int]:
    """The processes that hold the listening TCP socket on `port` (from /proc)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        for row in (Path("/proc/net") / table).read_text().splitlines()[1:]:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(f"socket:[{fields[9]}]")
    holders = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = {str(fd.readlink()) for fd in (proc / "fd").iterdir()}
        except OSError:
            continue
        if links & inodes:
            holders.add(int(proc.name))
    return holders


def test_workers_are_ready_together_and_only_they_hold_the_port(
    models: dict[str, Path], logs: Path
) -> None:
    server = start_server(
        [str(models["affine"]), "--input", "input__0:FP32:-1,4", "--workers", "2"], logs
    )
    try:
        wait_until_ready(server)
        # Every worker answers once any one says ready: none is still loading.
        for _ in range(40):
            answer = server.infer("affine", {"inputs": [v2_input("input__0", [1] * 4, [1, 4])]})
            assert answer.status == 200
        holders = _listener_holders(server.port)
        # The parent handed the listener to its workers, so it queues no connection at a drain.
        assert server.process.pid not in holders
        assert len(holders) == 2
    finally:
        assert server.stop() == 0
