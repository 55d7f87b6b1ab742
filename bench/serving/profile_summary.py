"""Summarise a py-spy raw profile: the share of samples in each innermost frame, grouped into
the model, JSON decoding, fermion's own request handling, and uvicorn/asyncio."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

GROUPS = (
    ("model (torch)", ("torch/",)),
    ("V2 decode/encode (tensors.py, protocol.py)", ("tensors.py", "protocol.py")),
    (
        "fermion request path (app, runtime, batching, handlers)",
        (
            "app.py",
            "hot_path.py",
            "served_model.py",
            "batching.py",
            "handlers.py",
            "metrics.py",
            "statistics.py",
        ),
    ),
    ("uvicorn + asyncio event loop", ("uvicorn/", "asyncio/", "runners.py")),
)


def main(path: Path) -> None:
    frames: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        innermost = stack.split(";")[-1]
        frames[innermost] += n
        for name, markers in GROUPS:
            if any(m in innermost for m in markers):
                groups[name] += n
                break
        else:
            groups["other"] += n
    print(f"{total} samples")
    for name, n in groups.most_common():
        print(f"{100 * n / total:5.1f}%  {name}")
    print("\ninnermost frames:")
    for frame, n in frames.most_common(12):
        print(f"{100 * n / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
