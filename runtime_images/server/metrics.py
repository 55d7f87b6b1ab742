"""Prometheus metrics, kept in plain dicts and rendered in the text exposition format.

These are what the autoscaler scales on: requests by model, code and protocol; latency; queue
depth; requests in flight; batch sizes; model load time, and the bytes and seconds of the model's
download. Clients that leave before sending their whole request are counted apart, not as
errors: there was nobody to answer.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    inner = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + inner + "}"


class Histogram:
    """A histogram per label set, with cumulative buckets as Prometheus wants them."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str], buckets: Sequence[float]):
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self.buckets = tuple(float(b) for b in buckets)
        self._counts: dict[tuple[str, ...], list[int]] = {}
        self._sums: dict[tuple[str, ...], float] = defaultdict(float)

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        counts = self._counts.get(labels)
        if counts is None:
            counts = self._counts[labels] = [0] * (len(self.buckets) + 1)
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self._sums[labels] += value

    def exposition(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for labels, counts in sorted(self._counts.items()):
            running = 0
            for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                label_text = _labels((*self.label_names, "le"), (*labels, le))
                lines.append(f"{self.name}_bucket{label_text} {running}")
            label_text = _labels(self.label_names, labels)
            lines.append(f"{self.name}_sum{label_text} {self._sums[labels]:.6f}")
            lines.append(f"{self.name}_count{label_text} {running}")
        return lines


class Scalar:
    """A counter or gauge per label set."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str], kind: str) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self.kind = kind
        self.values: dict[tuple[str, ...], float] = defaultdict(float)

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        self.values[labels] += amount

    def set(self, labels: tuple[str, ...], value: float) -> None:
        self.values[labels] = value

    def exposition(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        for labels, value in sorted(self.values.items()):
            lines.append(f"{self.name}{_labels(self.label_names, labels)} {value:g}")
        return lines


class Metrics:
    """The server's metrics."""

    def __init__(self) -> None:
        self.requests = Scalar(
            "fermion_requests_total", "Infer requests answered, by model, code and protocol.",
            ("model", "code", "protocol"), "counter",
        )  # fmt: skip
        self.disconnects = Scalar(
            "fermion_client_disconnects_total",
            "Infer requests whose client left before sending the whole request, by model.",
            ("model",), "counter",
        )  # fmt: skip
        self.latency = Histogram(
            "fermion_request_duration_seconds", "Time from request to response, by model.",
            ("model",), LATENCY_BUCKETS,
        )  # fmt: skip
        self.queue_depth = Scalar(
            "fermion_queue_depth", "Requests waiting for a batch, by model.", ("model",), "gauge"
        )
        self.in_flight = Scalar(
            "fermion_in_flight", "Infer requests being handled, by model.", ("model",), "gauge"
        )
        self.batch_size = Histogram(
            "fermion_batch_size", "Samples per batch the model ran, by model.", ("model",),
            BATCH_BUCKETS,
        )  # fmt: skip
        self.load_seconds = Scalar(
            "fermion_model_load_seconds", "Seconds the model took to load and warm up.",
            ("model",), "gauge",
        )  # fmt: skip
        self.fetch_bytes = Scalar(
            "fermion_model_fetch_bytes",
            "Bytes of model files downloaded at load (0: local, or all in the node's cache).",
            ("model",), "gauge",
        )  # fmt: skip
        self.fetch_seconds = Scalar(
            "fermion_model_fetch_seconds", "Seconds the download of the model files took.",
            ("model",), "gauge",
        )  # fmt: skip
        self.loaded_files = Scalar(
            "fermion_model_loaded_files", "Model files fetched at load by source (node_cache, s3).",
            ("model", "source"), "gauge",
        )  # fmt: skip
        self.loaded_bytes = Scalar(
            "fermion_model_loaded_bytes", "Bytes of model files fetched at load, by source.",
            ("model", "source"), "gauge",
        )  # fmt: skip

    def exposition(self) -> bytes:
        parts = (
            self.requests, self.disconnects, self.latency, self.queue_depth, self.in_flight,
            self.batch_size, self.load_seconds, self.fetch_bytes, self.fetch_seconds,
            self.loaded_files, self.loaded_bytes,
        )  # fmt: skip
        lines: list[str] = []
        for metric in parts:
            lines += metric.exposition()
        return ("\n".join(lines) + "\n").encode()
