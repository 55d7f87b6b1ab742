"""`compile: true` (torch.compile) on the benchmark's tensor models: does it help on one core?

In-process, one thread, the model alone (no decode, no server). For the tiny MLP and the small
CNN it measures samples/s at batch 1 and 32 of
- the TorchScript file as the server runs it (`.pt`): torch.compile refuses TorchScript modules,
  so the server refuses `compile: true` for a `.pt` file at load;
- the same weights as a torch.export program (`.pt2`), and with torch.compile on top (what
  `compile: true` does to a `.pt2` file).
Each compiled module is first warmed up at every batch size 1-32, as the server's warm-up does,
so recompilation for new shapes is over before the clock starts. Prints one JSON line per model
and writes `RESULTS-compile.md`.

    taskset -c 0 .venv/bin/python bench/serving/compile.py [--seconds 3] [--out bench/serving]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import models  # noqa: E402


def rate(module: Any, x: torch.Tensor, batch: int, seconds: float) -> float:
    xs = x.expand(batch, *x.shape[1:]).contiguous()
    with torch.inference_mode():
        for _ in range(20):
            module(xs)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            module(xs)
            n += batch
    return n / (time.perf_counter() - start)


def warm(module: Any, x: torch.Tensor) -> float:
    """Seconds to run every batch size 1-32 once (compilation included)."""
    start = time.perf_counter()
    with torch.inference_mode():
        for b in range(1, 33):
            module(x.expand(b, *x.shape[1:]).contiguous())
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--out", type=Path, default=HERE)
    a = p.parse_args()
    torch.set_num_threads(1)
    workdir = HERE / ".work" / "artifacts"
    models.write_artifacts(workdir)
    rows = []
    for key in ("mlp", "cnn"):
        x = torch.from_numpy(models.sample_input(key).astype("float32"))
        script = torch.jit.load(str(models.model_path(key, workdir))).eval()
        batch = torch.export.Dim("batch", min=1, max=1024)
        program = torch.export.export(
            models.build_module(key), (x.expand(2, *x.shape[1:]),), dynamic_shapes=({0: batch},)
        )
        variants = {
            "TorchScript (.pt)": script,
            "torch.export (.pt2)": program.module(),
            "torch.export + torch.compile": torch.compile(program.module()),
        }
        for name, module in variants.items():
            warm_s = warm(module, x)
            result = {
                "model": key,
                "variant": name,
                "warmup_s": round(warm_s, 1),
                "1": round(rate(module, x, 1, a.seconds), 1),
                "32": round(rate(module, x, 32, a.seconds), 1),
            }
            print(json.dumps(result), flush=True)
            rows.append(result)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    lines = [
        "# torch.compile on one core",
        "",
        f"Made {stamp} (UTC) by `taskset -c 0 .venv/bin/python bench/serving/compile.py"
        f" --seconds {a.seconds:g}`, torch {torch.__version__}, one thread, the model alone.",
        "Warm-up: every batch size 1-32 once, compilation included.",
        "",
        "| model | variant | warm-up s | batch 1 samples/s | batch 32 samples/s |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['warmup_s']:.1f} | {r['1']:,.1f}"
            f" | {r['32']:,.1f} |"
        )
    (a.out / "RESULTS-compile.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
