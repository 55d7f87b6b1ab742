"""Per-model inference statistics in the shape of Triton's statistics extension.

`GET /v2/models/{name}/stats` answers `{"model_stats": [...]}` as Triton does, so
tritonclient's `get_inference_statistics` reads it. Times are cumulative nanoseconds:
- success / fail: requests answered, from their arrival to their answer;
- queue: time a request waited for its batch to start;
- compute_input: input checks and preprocess; compute_infer: the model's run of the batch the
  request was in; compute_output: postprocess. (HTTP and JSON decoding count in success only,
  as in Triton.)
`inference_count` counts samples, `execution_count` model runs; `batch_stats` gives the runs and
their time by batch size.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Duration:
    """How many times something happened, and the nanoseconds it took in all."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def document(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


class InferenceStatistics:
    """One model's counters; every update is a few integer additions on the event loop."""

    def __init__(self, name: str, version: str) -> None:
        self.name = name
        self.version = version
        self.last_inference_ms = 0
        self.inference_count = 0
        self.execution_count = 0
        self.success = Duration()
        self.fail = Duration()
        self.queue = Duration()
        self.compute_input = Duration()
        self.compute_infer = Duration()
        self.compute_output = Duration()
        self._batches: dict[int, Duration] = {}

    def request(self, ok: bool, ns: int) -> None:
        """A request answered, successfully or not, `ns` after it arrived.

        (The pipeline counts a successful request's samples in `inference_count`.)
        """
        if ok:
            self.success.add(ns)
            self.last_inference_ms = time.time_ns() // 1_000_000
        else:
            self.fail.add(ns)

    def batch(self, queued_ns: Iterable[int], started_ns: int, finished_ns: int, rows: int) -> None:
        """A batch the model ran: when each of its requests was queued, and when it ran."""
        compute = finished_ns - started_ns
        requests = 0
        for queued in queued_ns:
            self.queue.add(started_ns - queued)
            requests += 1
        self.compute_infer.add(compute * requests, requests)
        self.execution_count += 1
        by_size = self._batches.get(rows)
        if by_size is None:
            by_size = self._batches[rows] = Duration()
        by_size.add(compute)

    def document(self) -> dict[str, Any]:
        """This model's entry of `model_stats`."""
        zero = {"count": 0, "ns": 0}
        return {
            "name": self.name,
            "version": self.version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.document(),
                "fail": self.fail.document(),
                "queue": self.queue.document(),
                "compute_input": self.compute_input.document(),
                "compute_infer": self.compute_infer.document(),
                "compute_output": self.compute_output.document(),
                "cache_hit": zero,
                "cache_miss": zero,
            },
            "batch_stats": [
                {"batch_size": size, "compute_infer": runs.document()}
                for size, runs in sorted(self._batches.items())
            ],
            "memory_usage": [],
        }
