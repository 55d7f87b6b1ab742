"""Serving benchmark: fermion's torch serving runtime vs mosec, Triton (PyTriton), LitServe and
KServe on one machine.

For each round (fresh server processes every round), each model and each server: start the
server pinned to core 0, check one request answers correctly, warm it up, then for 1, 8 and 32
connections check one request again and drive it with wrk (pinned to core 1) for --duration
seconds. Servers take turns in a different order each round (reversed every other round), so
a slow spell of the shared machine does not always fall on the same server. The ceiling
(in-process throughput, one thread, batch 1 and 32) is measured in every round too. Medians
over rounds go to RESULTS.md, everything to results.json.

All traffic goes to 127.0.0.1. Every wait and every load run is bounded in time.

    bench/serving/run.sh                          # full run (15 s a point, 2 rounds)
    bench/serving/run.sh --duration 3 --rounds 1  # smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MAIN_PY = REPO / ".venv" / "bin" / "python"
PEERS_PY = HERE / ".venv-peers" / "bin" / "python"
WORK = HERE / ".work"
LUA = HERE / "post.lua"
HOST = "127.0.0.1"
SERVER_CORE = "0"
CLIENT_CORE = "1"
READY_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 60.0
WRK_TIMEOUT = "10s"  # a request slower than this counts as a timeout error

sys.path.insert(0, str(HERE))

import models  # noqa: E402

SERVERS = ("fermion", "mosec", "pytriton", "litserve", "kserve")
SERVER_TITLES = {
    "fermion": "fermion",
    "mosec": "mosec",
    "pytriton": "Triton (PyTriton)",
    "litserve": "LitServe",
    "kserve": "KServe",
}
# Servers that take Triton's binary tensor extension; they get the CNN's binary point too.
BINARY_SERVERS = ("fermion", "pytriton")
# mosec answers GET / once its workers are up; PyTriton's Triton reports the server ready before
# the model is loaded, so its model's own readiness is asked.
# The mosec and PyTriton peers here serve the tensor models only.
PEER_MODELS = {"mosec": ("mlp", "cnn"), "pytriton": ("mlp", "cnn")}
READY_PATHS = {"litserve": "/health", "mosec": "/", "pytriton": "/v2/models/{key}/ready"}

THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAYON_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "PYTHONUNBUFFERED": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}


def log(msg: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {msg}", flush=True)


# ---------------------------------------------------------------- request bodies and checks


@dataclass(frozen=True)
class Body:
    path: Path
    content_type: str
    header_length: int | None  # Inference-Header-Content-Length for binary tensors

    def headers(self) -> dict[str, str]:
        h = {"Content-Type": self.content_type}
        if self.header_length is not None:
            h["Inference-Header-Content-Length"] = str(self.header_length)
        return h


def write_bodies(workdir: Path) -> dict[tuple[str, str], Body]:
    bodies: dict[tuple[str, str], Body] = {}
    for key in models.SPECS:
        p = workdir / f"{key}.json"
        p.write_bytes(models.v2_json_body(key))
        bodies[(key, "json")] = Body(p, "application/json", None)
    raw, header_length = models.v2_binary_body("cnn")
    p = workdir / "cnn.bin"
    p.write_bytes(raw)
    bodies[("cnn", "binary")] = Body(p, "application/octet-stream", header_length)
    return bodies


def post(port: int, url_path: str, body: Body) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request("POST", url_path, body=body.path.read_bytes(), headers=body.headers())
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def decode_output(headers: dict[str, str], raw: bytes, name: str) -> np.ndarray:
    """Output tensor `name` of a V2 answer: JSON, or Triton binary-tensor extension."""
    header_length = headers.get("inference-header-content-length")
    if header_length is not None:
        import tritonclient.http as httpclient  # type: ignore[import-untyped]

        result = httpclient.InferResult.from_response_body(raw, header_length=int(header_length))
        arr = result.as_numpy(name)
        if arr is None:
            raise ValueError(f"no output {name!r} in the binary answer")
        return np.asarray(arr)
    doc = json.loads(raw)
    for out in doc.get("outputs", []):
        if out.get("name") == name:
            return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    raise ValueError(f"no output {name!r} in {raw[:200]!r}")


def check_answer(port: int, url_path: str, body: Body, key: str, ref: np.ndarray) -> str | None:
    """None when one request returns the right output shape and values, else why not."""
    spec = models.SPECS[key]
    try:
        status, headers, raw = post(port, url_path, body)
    except OSError as e:
        return f"request failed: {e}"
    if status != 200:
        return f"HTTP {status}: {raw[:300]!r}"
    try:
        out = decode_output(headers, raw, spec.output_name)
    except (ValueError, KeyError, TypeError) as e:
        return f"bad answer: {e}"
    if tuple(out.shape) != spec.output_shape:
        return f"output shape {tuple(out.shape)}, expected {spec.output_shape}"
    if not np.allclose(out, ref, rtol=1e-3, atol=1e-4):
        return f"output differs from the reference (max abs diff {np.abs(out - ref).max():.3g})"
    return None


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def server_command(server: str, key: str, port: int, workdir: Path) -> tuple[list[str], str]:
    """(argv, readiness path) of one server serving one model."""
    spec = models.SPECS[key]
    mpath = str(models.model_path(key, workdir))
    if server == "fermion":
        cmd = [
            str(MAIN_PY),
            "-m",
            "fermion.runtime_images.server",
            mpath,
            "--name",
            key,
            "--host",
            HOST,
            "--port",
            str(port),
            "--max-batch-size",
            "32",
            "--max-delay-ms",
            "2",
        ]
        if spec.fermion_input is not None:
            cmd += ["--input", spec.fermion_input]
        else:
            cmd += ["--handler", f"{models.HANDLER_FILE}:{models.HANDLER_CLASS}"]
        return cmd, "/v2/health/ready"
    script = HERE / "peers" / f"{server}_server.py"
    cmd = [
        str(PEERS_PY),
        str(script),
        "--model",
        key,
        "--workdir",
        str(workdir),
        "--port",
        str(port),
    ]
    return cmd, READY_PATHS.get(server, "/v2/health/ready").format(key=key)


class ServerProcess:
    """A server in its own process group, pinned to the server core; stopped as a group."""

    def __init__(self, server: str, key: str, workdir: Path, log_path: Path) -> None:
        self.server, self.key = server, key
        self.port = free_port()
        cmd, self.ready_path = server_command(server, key, self.port, workdir)
        self.argv = ["taskset", "-c", SERVER_CORE, *cmd]
        self.log_path = log_path
        env = {**os.environ, **THREAD_ENV}
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(REPO),
            start_new_session=True,
        )

    @property
    def infer_path(self) -> str:
        return f"/v2/models/{self.key}/infer"

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> str | None:
        """None once the readiness endpoint answers 200, else why not (bounded wait)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"exited with code {self.proc.returncode} (log: {self.log_path})"
            conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
            try:
                conn.request("GET", self.ready_path)
                if conn.getresponse().status == 200:
                    return None
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.25)
        return f"not ready after {timeout_s:.0f} s (log: {self.log_path})"

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
        # Children (LitServe's workers) share the group: make sure none outlives the server.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._log.close()


# ---------------------------------------------------------------- load generation


def run_wrk(port: int, url_path: str, body: Body, conns: int, seconds: float) -> dict[str, Any]:
    env = {
        **os.environ,
        "BENCH_BODY": str(body.path),
        "BENCH_CONTENT_TYPE": body.content_type,
        "BENCH_HEADER_LENGTH": "" if body.header_length is None else str(body.header_length),
    }
    argv = [
        "taskset",
        "-c",
        CLIENT_CORE,
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        str(LUA),
        f"http://{HOST}:{port}{url_path}",
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]}{done.stderr}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    errors = sum(raw["errors"].values())
    secs = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "seconds": round(secs, 3),
        # Answered requests per second, non-2xx answers left out (they count as errors).
        "rps": round((raw["requests"] - raw["errors"]["status"]) / secs, 1) if secs > 0 else 0.0,
        "rps_all": round(raw["requests"] / secs, 1) if secs > 0 else 0.0,
        "p50_ms": round(raw["latency_us"]["p50"] / 1000, 3),
        "p90_ms": round(raw["latency_us"]["p90"] / 1000, 3),
        "p99_ms": round(raw["latency_us"]["p99"] / 1000, 3),
        "mean_ms": round(raw["latency_us"]["mean"] / 1000, 3),
        "max_ms": round(raw["latency_us"]["max"] / 1000, 3),
        "errors": errors,
        "error_detail": raw["errors"],
    }


# ---------------------------------------------------------------- one round


@dataclass
class Point:
    round: int
    server: str
    model: str
    conns: int
    variant: str  # json | binary
    result: dict[str, Any] | None = None
    failure: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "round": self.round,
            "server": self.server,
            "model": self.model,
            "conns": self.conns,
            "variant": self.variant,
        }
        if self.result is not None:
            d.update(self.result)
        if self.failure is not None:
            d["failure"] = self.failure
        return d


@dataclass
class Run:
    args: argparse.Namespace
    workdir: Path
    bodies: dict[tuple[str, str], Body]
    refs: dict[str, np.ndarray]
    servers: list[str]
    points: list[Point] = field(default_factory=list)
    ceilings: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def measure_ceiling(run: Run, rnd: int, key: str) -> None:
    argv = [
        "taskset",
        "-c",
        SERVER_CORE,
        str(MAIN_PY),
        str(HERE / "ceiling.py"),
        "--model",
        key,
        "--workdir",
        str(run.workdir),
        "--seconds",
        str(run.args.ceiling_seconds),
        "--batches",
        "1,32",
    ]
    env = {**os.environ, **THREAD_ENV}
    done = subprocess.run(
        argv,
        env=env,
        capture_output=True,
        text=True,
        timeout=4 * run.args.ceiling_seconds + 120,
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("{")), None)
    if done.returncode != 0 or line is None:
        run.notes.append(f"round {rnd}: ceiling of {key} failed: {done.stderr[-300:]}")
        log(f"  ceiling {key}: FAILED")
        return
    res = json.loads(line)
    run.ceilings.append({"round": rnd, **res})
    sps = res["samples_per_s"]
    log(f"  ceiling {key}: batch 1 {sps['1']:.1f} samples/s, batch 32 {sps['32']:.1f} samples/s")


def bench_server(run: Run, rnd: int, server: str, key: str) -> None:
    conns_list: list[int] = run.args.connections
    variants = [(c, "json") for c in conns_list]
    if server in BINARY_SERVERS and key == "cnn":
        variants.append((max(conns_list), "binary"))
    points = [Point(rnd, server, key, c, v) for c, v in variants]
    run.points.extend(points)
    log_path = WORK / "logs" / f"r{rnd}-{server}-{key}.log"
    log(f"  {SERVER_TITLES[server]} / {key}: starting")
    srv = ServerProcess(server, key, run.workdir, log_path)
    try:
        t0 = time.monotonic()
        why = srv.wait_ready()
        if why is None:
            why = check_answer(
                srv.port, srv.infer_path, run.bodies[(key, "json")], key, run.refs[key]
            )
        if why is not None:
            for p in points:
                p.failure = f"server not serving: {why}"
            log(f"  {SERVER_TITLES[server]} / {key}: FAILED: {why}")
            return
        log(
            f"  {SERVER_TITLES[server]} / {key}: ready in {time.monotonic() - t0:.1f} s,"
            f" warming up {run.args.warmup:g} s"
        )
        if run.args.warmup > 0:
            run_wrk(
                srv.port,
                srv.infer_path,
                run.bodies[(key, "json")],
                max(conns_list),
                run.args.warmup,
            )
        for p in points:
            body = run.bodies[(key, p.variant)]
            why = check_answer(srv.port, srv.infer_path, body, key, run.refs[key])
            if why is not None:
                p.failure = f"wrong answer before the point: {why}"
                log(f"    {p.conns:>2} conns {p.variant}: FAILED: {why}")
                continue
            try:
                p.result = run_wrk(srv.port, srv.infer_path, body, p.conns, run.args.duration)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                p.failure = f"load run failed: {e}"
                log(f"    {p.conns:>2} conns {p.variant}: FAILED: {e}")
                continue
            r = p.result
            log(
                f"    {p.conns:>2} conns {p.variant:<6}: {r['rps']:>8.1f} req/s"
                f"  p50 {r['p50_ms']:>7.2f} ms  p99 {r['p99_ms']:>7.2f} ms"
                f"  errors {r['errors']}"
            )
    finally:
        srv.stop()


# ---------------------------------------------------------------- environment facts


def probe(py: Path, code: str) -> str | None:
    try:
        done = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


VERSIONS_CODE = (
    "import json, importlib.metadata as m\n"
    "d = {}\n"
    "for n in ('torch', 'litserve', 'kserve', 'transformers', 'fermion', 'numpy', 'uvicorn',"
    " 'fastapi', 'mosec', 'nvidia-pytriton', 'tritonclient'):\n"
    "    try: d[n] = m.version(n)\n"
    "    except m.PackageNotFoundError: pass\n"
    "print(json.dumps(d))"
)


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages; a quiet machine reads near 0 before a run."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


def machine_facts() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024**2, 1)
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "mem_gib": mem_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": ((wrk.stdout + wrk.stderr).splitlines() or ["?"])[0].split(" [")[0],
        "git_commit": commit,
    }


# ---------------------------------------------------------------- summary and report


def median_points(points: list[Point]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, int, str], list[Point]] = {}
    for p in points:
        groups.setdefault((p.server, p.model, p.conns, p.variant), []).append(p)
    rows = []
    for (server, key, conns, variant), ps in groups.items():
        ok = [p.result for p in ps if p.result is not None]
        row: dict[str, Any] = {
            "server": server,
            "model": key,
            "conns": conns,
            "variant": variant,
            "rounds_ok": len(ok),
            "rounds": len(ps),
            "failures": [p.failure for p in ps if p.failure],
        }
        if ok:
            row.update(
                rps=round(statistics.median(r["rps"] for r in ok), 1),
                p50_ms=round(statistics.median(r["p50_ms"] for r in ok), 3),
                p99_ms=round(statistics.median(r["p99_ms"] for r in ok), 3),
                errors=sum(r["errors"] for r in ok),
                rps_rounds=[r["rps"] for r in ok],
            )
        rows.append(row)
    return rows


def median_ceilings(ceilings: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key in models.SPECS:
        runs = [c["samples_per_s"] for c in ceilings if c["model"] == key]
        if runs:
            out[key] = {b: round(statistics.median(r[b] for r in runs), 1) for b in runs[0]}
    return out


def fmt(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def write_report(
    run: Run,
    meta: dict[str, Any],
    summary: list[dict[str, Any]],
    ceilings: dict[str, dict[str, float]],
) -> str:
    a = run.args
    v_main, v_peers = meta["versions"]["fermion_venv"], meta["versions"]["peers_venv"]
    m = meta["machine"]
    lines = [
        "# Serving benchmark: fermion vs mosec, Triton (PyTriton), LitServe and KServe",
        "",
        f"Made {meta['finished_utc']} (UTC) at commit `{m['git_commit']}` by:",
        "",
        "```sh",
        meta["command"],
        "```",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {m['cpu_model']}, nproc {m['nproc']}, {m['mem_gib']} GiB memory,"
        f" Linux {m['kernel']}, Python {m['python']}",
        f"- fermion's venv: torch {v_main.get('torch', '?')}, transformers"
        f" {v_main.get('transformers', '?')}, fermion {v_main.get('fermion', '?')}",
        f"- peers' venv: torch {v_peers.get('torch', '?')}, mosec {v_peers.get('mosec', '?')},"
        f" PyTriton {v_peers.get('nvidia-pytriton', '?')}, litserve"
        f" {v_peers.get('litserve', '?')}, kserve {v_peers.get('kserve', '?')}, transformers"
        f" {v_peers.get('transformers', '?')}, uvicorn {v_peers.get('uvicorn', '?')}",
        f"- load generator: {m['wrk']}",
        f"- load average (1/5/15 min) before the run: {meta['loadavg_start']}, after:"
        f" {meta['loadavg_end']} (the benchmark itself keeps about 1-2 busy; more before the"
        " run means other work shared the machine)",
        "",
        "## Setup",
        "",
        f"- Each server process (and its children) pinned to core {SERVER_CORE} with"
        " `taskset`, `OMP_NUM_THREADS=1` and `torch.set_num_threads(1)`; wrk (1 thread) pinned"
        f" to core {CLIENT_CORE}. All traffic on 127.0.0.1.",
        "- One sample per request, V2 (Open Inference Protocol) JSON body on"
        " `POST /v2/models/NAME/infer`, HTTP/1.1 keep-alive.",
        f"- {a.duration:g} s per point after a {a.warmup:g} s warm-up per server start;"
        f" {a.rounds} round(s), fresh server processes every round; the table shows the"
        " median over rounds (errors: the sum over rounds).",
        "- fermion: `--max-batch-size 32 --max-delay-ms 2`. LitServe: `max_batch_size=32`,"
        " `batch_timeout=0.002`, one inference worker, one API server.",
        "- mosec: one worker, `max_batch_size=32`, `max_wait_time=2` ms, batches filled in its"
        " Rust front; the worker parses the same V2 JSON body on `/v2/models/NAME/infer`."
        " Triton via PyTriton: `max_batch_size=32`, dynamic batcher with a 2 ms queue delay,"
        " HTTP only; the model runs in PyTriton's Python process. Both take the CNN's binary"
        " tensor body too where they speak Triton's extension (Triton does, mosec does not).",
        "- Servers take turns in a different order each round (reversed every other round).",
        "- KServe: `kserve.ModelServer`, one uvicorn worker, gRPC off. KServe's model server"
        " has no built-in dynamic batcher, so every request runs the model on its own.",
        "- LitServe and KServe run per-request log lines off (access log, timing trace).",
        "- Before every point one request is checked: status 200, right output shape and"
        " values equal to the in-process reference.",
        "",
    ]
    for note in run.notes:
        lines.append(f"> **Note:** {note}")
        lines.append("")
    lines += [
        "## Ceiling: in-process, one thread, no server",
        "",
        "The same pipeline the servers run (MiniLM: tokenisation + model + pooling), called"
        " directly in a loop.",
        "",
        "| model | batch 1 samples/s | batch 32 samples/s |",
        "| --- | ---: | ---: |",
    ]
    for key, c in ceilings.items():
        lines.append(f"| {key} | {fmt(c.get('1'))} | {fmt(c.get('32'))} |")
    lines.append("")
    top = max(a.connections)
    for key in a.models:
        spec = models.SPECS[key]
        lines += [
            f"## {spec.title}",
            "",
            f"Input {spec.input_datatype} {list(spec.sample_shape)},"
            f" output FP32 {list(spec.output_shape)};"
            f" request body {run.bodies[(key, 'json')].path.stat().st_size:,} bytes.",
            "",
            "| server | conns | req/s | p50 ms | p99 ms | errors | req/s per round |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        rows = [r for r in summary if r["model"] == key]
        order = {s: i for i, s in enumerate(SERVERS)}
        rows.sort(key=lambda r: (order[r["server"]], r["variant"] != "json", r["conns"]))
        for r in rows:
            name = SERVER_TITLES[r["server"]]
            if r["variant"] == "binary":
                name += " (binary tensors)"
            if r["rounds_ok"] == 0:
                lines.append(f"| {name} | {r['conns']} | failed | — | — | — | — |")
                continue
            lines.append(
                f"| {name} | {r['conns']} | {fmt(r['rps'])} | {fmt(r['p50_ms'], 2)}"
                f" | {fmt(r['p99_ms'], 2)} | {r['errors']}"
                f" | {', '.join(fmt(x, 0) for x in r['rps_rounds'])} |"
            )
        lines.append("")

        def rps(server: str, rows: list[dict[str, Any]] = rows) -> float | None:
            for r in rows:
                if r["server"] == server and r["conns"] == top and r["variant"] == "json":
                    return r.get("rps")
            return None

        f, k, lsv = rps("fermion"), rps("kserve"), rps("litserve")
        mo, tr = rps("mosec"), rps("pytriton")
        ratios = []
        if f and mo:
            ratios.append(f"fermion/mosec **{f / mo:.2f}x**")
        if f and tr:
            ratios.append(f"fermion/Triton **{f / tr:.2f}x**")
        if f and k:
            ratios.append(f"fermion/KServe **{f / k:.2f}x**")
        if f and lsv:
            ratios.append(f"fermion/LitServe **{f / lsv:.2f}x**")
        binary = {
            r["server"]: r.get("rps")
            for r in rows
            if r["variant"] == "binary" and r.get("rps") and r["conns"] == top
        }
        if binary.get("fermion") and binary.get("pytriton"):
            ratios.append(
                f"binary tensors fermion/Triton **{binary['fermion'] / binary['pytriton']:.2f}x**"
            )
        if ratios:
            lines += [f"req/s at {top} connections: " + ", ".join(ratios) + ".", ""]
        elif f is None:
            lines += [f"No fermion numbers for this model, so no ratios at {top} connections.", ""]
        fails = [(r, x) for r in rows for x in r["failures"]]
        for r, x in fails:
            lines.append(f"- {SERVER_TITLES[r['server']]} {r['conns']} conns {r['variant']}: {x}")
        if fails:
            lines.append("")
    lines += [
        "## How to read this",
        "",
        "req/s is successful (2xx) answers per second over the point (closed loop: each of"
        " the N connections sends its next request when the previous answer arrives). p50/p99 are"
        " wrk's latency percentiles. errors counts non-2xx answers plus socket errors and"
        f" timeouts (> {WRK_TIMEOUT}). Raw numbers of every round: `results.json`.",
        "",
    ]
    text = "\n".join(lines)
    return text


# ---------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=15.0, help="seconds per point (15)")
    p.add_argument("--rounds", type=int, default=2, help="rounds, fresh servers each (2)")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per start (3)")
    p.add_argument(
        "--ceiling-seconds", type=float, default=4.0, help="seconds per ceiling measurement (4)"
    )
    p.add_argument("--connections", default="1,8,32", help="connection counts (1,8,32)")
    p.add_argument("--servers", default=",".join(SERVERS), help=",".join(SERVERS))
    p.add_argument("--models", default=",".join(models.SPECS), help="mlp,cnn,minilm")
    p.add_argument("--out", type=Path, default=HERE, help="where RESULTS.md goes (bench/serving)")
    a = p.parse_args(argv)
    a.connections = [int(c) for c in a.connections.split(",")]
    a.servers = [s for s in a.servers.split(",") if s]
    a.models = [m for m in a.models.split(",") if m]
    for s in a.servers:
        if s not in SERVERS:
            p.error(f"unknown server {s!r}")
    for m in a.models:
        if m not in models.SPECS:
            p.error(f"unknown model {m!r}")
    if a.duration <= 0 or a.rounds < 1:
        p.error("--duration must be > 0 and --rounds >= 1")
    return a


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = os.environ.get("BENCH_COMMAND") or shlex.join(
        [os.path.relpath(sys.executable, REPO), os.path.relpath(__file__, REPO), *argv]
    )
    # Keep the coordinator off the server core.
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setaffinity(0, {int(CLIENT_CORE)})
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            log(f"{tool} not found: run bench/serving/setup.sh (or apt-get install -y {tool})")
            return 2
    if any(s != "fermion" for s in args.servers) and not PEERS_PY.exists():
        log(f"{PEERS_PY} missing: run bench/serving/setup.sh")
        return 2

    os.environ.update(THREAD_ENV)
    started = time.monotonic()
    load_start = loadavg()
    if load_start and float(load_start.split()[0]) > 0.5:
        log(f"warning: load average {load_start} before the run: other work skews the numbers")
    log(f"serving benchmark: {command}")
    workdir = WORK / "artifacts"
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    log(f"writing artifacts to {workdir}")
    import torch

    torch.set_num_threads(1)
    models.write_artifacts(workdir)
    bodies = write_bodies(workdir)
    refs = {key: models.reference_output(key, workdir) for key in args.models}

    notes: list[str] = []
    servers = list(args.servers)
    if "fermion" in servers and probe(MAIN_PY, "import fermion.runtime_images.server") is None:
        servers.remove("fermion")
        note = (
            "fermion skipped: `import fermion.runtime_images.server` fails in"
            f" {os.path.relpath(MAIN_PY, REPO)}, so the serving runtime is not there"
            " yet; only LitServe and KServe were measured."
        )
        notes.append(note)
        log(note)
    run = Run(args, workdir, bodies, refs, servers, notes=notes)

    for rnd in range(1, args.rounds + 1):
        log(f"round {rnd}/{args.rounds}")
        for key in args.models:
            measure_ceiling(run, rnd, key)
        order = servers if rnd % 2 else servers[::-1]
        for key in args.models:
            for server in order:
                if key in PEER_MODELS.get(server, (key,)):
                    bench_server(run, rnd, server, key)

    versions = {
        "fermion_venv": json.loads(probe(MAIN_PY, VERSIONS_CODE) or "{}"),
        "peers_venv": json.loads(probe(PEERS_PY, VERSIONS_CODE) or "{}")
        if PEERS_PY.exists()
        else {},
    }
    meta = {
        "command": command,
        "finished_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "elapsed_s": round(time.monotonic() - started, 1),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "servers_measured": servers,
        "machine": machine_facts(),
        "versions": versions,
        "notes": notes,
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
    }
    summary = median_points(run.points)
    ceilings = median_ceilings(run.ceilings)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {
        "meta": meta,
        "summary": summary,
        "ceilings": ceilings,
        "points": [p.as_dict() for p in run.points],
        "ceiling_rounds": run.ceilings,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "RESULTS.md").write_text(write_report(run, meta, summary, ceilings))
    log(
        f"done in {meta['elapsed_s']:.0f} s: {args.out / 'RESULTS.md'}, {args.out / 'results.json'}"
    )
    failed = [r for r in summary if r["rounds_ok"] < r["rounds"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
