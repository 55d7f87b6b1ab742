"""The ceiling: in-process throughput of one model with one thread, no server in the way.

Runs the same pipeline the servers run (models.Runner: for MiniLM that is tokenisation,
the transformer, pooling and normalisation) on batches of 1 and 32 samples for a fixed time
each, and prints one JSON line: {"model": ..., "samples_per_s": {"1": ..., "32": ...}}.

    taskset -c 0 python ceiling.py --model cnn --workdir DIR --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import models


def measure(runner: models.Runner, x: np.ndarray, batch: int, seconds: float) -> float:
    xs = [x] * batch
    warm_end = time.perf_counter() + min(1.0, seconds / 3)
    while time.perf_counter() < warm_end:
        runner.run_batch(xs)
    n = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        runner.run_batch(xs)
        n += batch
        now = time.perf_counter()
        if now >= end:
            return n / (now - start)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, choices=sorted(models.SPECS))
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--batches", default="1,32")
    a = p.parse_args()
    torch.set_num_threads(1)
    runner = models.Runner(a.model, a.workdir)
    x = models.sample_input(a.model)
    if x.dtype != np.object_:
        x = x.astype(np.float32)
    result = {
        str(b): round(measure(runner, x, b, a.seconds), 1)
        for b in (int(s) for s in a.batches.split(","))
    }
    print(
        json.dumps({"model": a.model, "threads": torch.get_num_threads(), "samples_per_s": result})
    )


if __name__ == "__main__":
    main()
