"""The serving runtime on a GPU: fp32 and fp16, batch by batch, against the same models on the
machine's CPU cores.

For each model (bench/serving's small CNN, and ResNet-50 built with torchvision when it is
installed, random weights) and each device and precision: start `python -m server` (the
image's own entrypoint, run from runtime_images/) with dynamic batching, check one answer
against the fp32 CPU reference, then drive it with wrk at 1 and 32 connections. Requests carry
their input as a binary tensor (Triton's extension) and ask for JSON outputs. All traffic goes
to 127.0.0.1. Results go to results.json and RESULTS.md in --out.

    python bench/gpu/run.py --out /tmp/gpu --duration 10
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SERVER_DIR = REPO / "runtime_images"
LUA = REPO / "bench" / "serving" / "post.lua"
HOST = "127.0.0.1"

sys.path.insert(0, str(REPO / "bench" / "serving"))

import models  # noqa: E402


@dataclass(frozen=True)
class Model:
    key: str
    path: Path
    shape: tuple[int, ...]  # one request's input, batch dimension included


def build(workdir: Path) -> list[Model]:
    """The TorchScript files the servers load."""
    workdir.mkdir(parents=True, exist_ok=True)
    cnn = workdir / "cnn.pt"
    torch.jit.script(models.build_module("cnn").eval()).save(str(cnn))
    built = [Model("cnn", cnn, (1, 3, 64, 64))]
    try:
        import torchvision  # type: ignore[import-untyped]
    except ImportError:
        return built
    torch.manual_seed(0)
    resnet = torchvision.models.resnet50(weights=None).eval()
    path = workdir / "resnet50.pt"
    with torch.no_grad():
        torch.jit.trace(resnet, torch.rand(1, 3, 224, 224)).save(str(path))
    return [*built, Model("resnet50", path, (1, 3, 224, 224))]


def sample(model: Model) -> np.ndarray:
    return np.random.default_rng(7).random(model.shape, dtype=np.float32)


def binary_body(data: np.ndarray) -> tuple[bytes, int]:
    raw = data.astype(np.float32).tobytes()
    header = {
        "inputs": [
            {
                "name": "input__0",
                "shape": list(data.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": "output__0", "parameters": {"binary_data": False}}],
    }
    head = json.dumps(header).encode()
    return head + raw, len(head)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def post(port: int, path: str, body: bytes, header_length: int) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        headers = {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(header_length),
        }
        conn.request("POST", path, body=body, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def wait_ready(port: int, process: subprocess.Popen[bytes], limit_s: float = 240) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server not ready in time")


def run_wrk(
    port: int, path: str, body_file: Path, header_length: int, conns: int, secs: int
) -> dict[str, Any]:
    env = {
        **os.environ,
        "BENCH_BODY": str(body_file),
        "BENCH_CONTENT_TYPE": "application/octet-stream",
        "BENCH_HEADER_LENGTH": str(header_length),
    }
    threads = min(2, conns)
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{secs}s", "--timeout", "20s", "-s", str(LUA)]
    done = subprocess.run(
        [*argv, f"http://{HOST}:{port}{path}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=secs + 60,
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {done.stdout[-400:]}{done.stderr[-400:]}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    secs_run = raw["duration_us"] / 1e6
    return {
        "rps": round((raw["requests"] - raw["errors"]["status"]) / secs_run, 1),
        "p50_ms": raw["latency_us"]["p50"] / 1000,
        "p99_ms": raw["latency_us"]["p99"] / 1000,
        "errors": sum(raw["errors"].values()),
    }


def metric(port: int, name: str) -> float | None:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_count"):
            count += float(line.rsplit(" ", 1)[1])
    return round(total / count, 2) if count else None


def measure(
    model: Model, device: str, precision: str, conns: list[int], secs: int, workdir: Path
) -> list[dict[str, Any]]:
    data = sample(model)
    with torch.no_grad():
        reference = torch.jit.load(str(model.path))(torch.from_numpy(data)).numpy()
    body, header_length = binary_body(data)
    body_file = workdir / f"{model.key}.bin"
    body_file.write_bytes(body)
    port = free_port()
    argv = [
        sys.executable, "-m", "server", str(model.path), "--name", model.key,
        "--input", "input__0:FP32:" + ",".join(["-1", *map(str, model.shape[1:])]),
        "--host", HOST, "--port", str(port), "--device", device, "--precision", precision,
        "--max-batch-size", "32", "--max-delay-ms", "2",
    ]  # fmt: skip
    process = subprocess.Popen(argv, cwd=SERVER_DIR, stdout=subprocess.DEVNULL)
    rows: list[dict[str, Any]] = []
    try:
        started = time.monotonic()
        wait_ready(port, process)
        ready_s = round(time.monotonic() - started, 1)
        path = f"/v2/models/{model.key}/infer"
        status, raw = post(port, path, body, header_length)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {raw[:300]!r}")
        (out,) = json.loads(raw)["outputs"]
        got = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
        diff = float(np.abs(got - reference).max())
        scale = float(np.abs(reference).max())
        for conn in conns:
            result = run_wrk(port, path, body_file, header_length, conn, secs)
            rows.append(
                {
                    "model": model.key,
                    "device": device,
                    "precision": precision,
                    "connections": conn,
                    "ready_s": ready_s,
                    "max_abs_diff_vs_cpu_fp32": round(diff, 5),
                    "output_scale": round(scale, 3),
                    "mean_batch": metric(port, "fermion_batch_size"),
                    **result,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", default="1,32")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = args.out / "work"
    conns = [int(c) for c in args.connections.split(",")]
    built = build(workdir)
    cuda = torch.cuda.is_available()
    runs = [("cuda", "fp32"), ("cuda", "fp16"), ("cpu", "fp32")] if cuda else [("cpu", "fp32")]
    rows: list[dict[str, Any]] = []
    for model in built:
        for device, precision in runs:
            try:
                rows += measure(model, device, precision, conns, args.duration, workdir)
            except RuntimeError as exc:
                rows.append({"model": model.key, "device": device, "precision": precision,
                             "failed": str(exc)})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    machine = {
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    (args.out / "results.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    lines = [
        f"# The serving runtime on {machine['gpu'] or 'CPU only'}",
        "",
        f"torch {machine['torch']}, Python {machine['python']}, {machine['cpu_count']} CPU cores;"
        f" dynamic batching (max 32, 2 ms), binary tensor inputs, wrk -t2, {args.duration} s a"
        " point. `diff` is the largest absolute difference from the fp32 CPU answer.",
        "",
        "| model | device | precision | connections | req/s | p50 ms | p99 ms | mean batch "
        "| errors | diff | ready s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['model']} | {r['device']} | {r['precision']} | failed: "
                         f"{r['failed']} | | | | | | | |")  # fmt: skip
            continue
        lines.append(
            f"| {r['model']} | {r['device']} | {r['precision']} | {r['connections']} | "
            f"{r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['mean_batch']} | "
            f"{r['errors']} | {r['max_abs_diff_vs_cpu_fp32']:.2g} | {r['ready_s']} |"
        )
    (args.out / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
