"""A served model: loading, warm-up, input checks, and the one pipeline every request takes.

decode (protocol) -> check inputs -> preprocess -> batch -> predict -> postprocess -> encode.
JSON or binary, batched or not, every request goes through `ServedModel.infer`.
"""

from __future__ import annotations

import logging
import time
from asyncio import TimerHandle
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import torch

from .batching import Batcher, Completion, Work
from .config import ModelConfig, TensorSpec
from .errors import BadRequest, LoadError, Unavailable, describe
from .handlers import (
    DTYPES,
    TorchModelHandler,
    declared_specs,
    load_handler,
    resolve_model,
    synthetic_inputs,
)
from .metrics import Metrics
from .protocol import InferRequest
from .statistics import InferenceStatistics
from .storage import fetch
from .tensors import DATATYPES

log = logging.getLogger("fermion.server")


def pick_device(requested: str) -> torch.device:
    """CUDA when present (or asked for), else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LoadError(f"device {requested!r} was asked for, but torch sees no CUDA device")
    return device


def warmup_sizes(max_batch_size: int) -> list[int]:
    """Every batch size the batcher can form, or powers of two (and the maximum) past 64."""
    if max_batch_size <= 64:
        return list(range(1, max_batch_size + 1))
    sizes = [1 << i for i in range(max_batch_size.bit_length()) if 1 << i < max_batch_size]
    return [*sizes, max_batch_size]


def _spec_text(specs: tuple[TensorSpec, ...]) -> str:
    return ", ".join(str(s) for s in specs)


class ServedModel:
    """One model: its handler, its declared tensors, its batcher and its readiness."""

    def __init__(self, config: ModelConfig, metrics: Metrics) -> None:
        self.config = config
        self.name = config.name
        self.version = config.version
        self.metrics = metrics
        self.stats = InferenceStatistics(config.name, config.version)
        self.ready = False
        self.in_flight = 0  # requests between arrival and answer, counted by the app
        self.device = torch.device("cpu")
        self.inputs: tuple[TensorSpec, ...] = ()
        self.outputs: tuple[TensorSpec, ...] = ()
        self.platform = "python_handler"
        self._handler: Any = None
        self._rows_of: Callable[[Any], int] | None = None
        self._batcher: Batcher | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._labels = (config.name,)
        self._batched_rows = False
        self._input_names: frozenset[str] = frozenset()
        # A handler run in fp16 or bf16: its floating outputs go back to their declared types.
        self._output_dtypes: dict[str, torch.dtype] = {}

    # --- start-up -----------------------------------------------------------------------------

    def load(self) -> None:
        """Load and warm up the model; LoadError says why it cannot be served.

        Blocking: the server runs it off the event loop.
        """
        try:
            self._load()
        except LoadError:
            raise
        except Exception as exc:  # storage, a handler's constructor: anything may raise
            raise LoadError(describe(exc)) from exc

    def _load(self) -> None:
        started = time.perf_counter()
        requested = self.config.device
        if requested == "auto" and self.config.precision == "int8":
            requested = "cpu"  # dynamic quantization runs on the CPU only
        self.device = pick_device(requested)
        fetched = fetch(self.config.path)
        self.metrics.fetch_bytes.set(self._labels, fetched.downloaded_bytes)
        self.metrics.fetch_seconds.set(self._labels, fetched.seconds)
        for source, loaded in fetched.by_source.items():
            self.metrics.loaded_files.set((*self._labels, source), loaded.files)
            self.metrics.loaded_bytes.set((*self._labels, source), loaded.bytes)
        local = fetched.path
        handler, path = resolve_model(replace(self.config, path=str(local)))
        try:
            load_handler(
                handler,
                path,
                self.device,
                DTYPES[self.config.precision],
                quantize=self.config.precision == "int8",
            )
        except LoadError:
            raise
        except Exception as exc:  # a handler's load() may raise anything
            raise LoadError(f"{type(handler).__name__}.load() failed: {describe(exc)}") from exc
        self._handler = handler
        self._rows_of = getattr(handler, "rows", None)
        if isinstance(handler, TorchModelHandler):
            self.platform = "pytorch_export" if path.suffix == ".pt2" else "pytorch_torchscript"
            self.inputs = handler.inputs
            self._batched_rows = True
        else:
            self.inputs = self.config.inputs or declared_specs(handler, "inputs")
            self.outputs = declared_specs(handler, "outputs")
            if self.config.precision in ("fp16", "bf16"):
                self._output_dtypes = {
                    s.name: dtype
                    for s in self.outputs
                    if (dtype := DATATYPES[s.datatype].torch) is not None
                    and dtype.is_floating_point
                }
        if not self.inputs:
            raise LoadError(
                f"{type(handler).__name__} declares no inputs; give it an `inputs` attribute "
                "such as ['text:BYTES:-1']"
            )
        self._input_names = frozenset(s.name for s in self.inputs)
        self._warm_up()
        self.metrics.load_seconds.set(self._labels, time.perf_counter() - started)
        log.info(
            "model %r loaded on %s in %.2f s; inputs %s; outputs %s",
            self.name,
            self.device,
            time.perf_counter() - started,
            _spec_text(self.inputs),
            _spec_text(self.outputs),
        )

    def _warm_up(self) -> None:
        handler = self._handler
        custom = getattr(handler, "warmup_inputs", None)
        samples = custom() if callable(custom) else [synthetic_inputs(self.inputs, rows=1)]
        for size in warmup_sizes(self.config.max_batch_size):
            try:
                items = [handler.preprocess(samples[i % len(samples)]) for i in range(size)]
                results = handler.predict(items)
            except Exception as exc:  # a model may raise anything; it must not start serving
                rows = "1 sample" if size == 1 else f"{size} samples"
                raise LoadError(
                    f"warm-up with inputs {_spec_text(self.inputs)} ({rows}) failed: "
                    f"{describe(exc)}; check that the inputs match what the model expects"
                ) from exc
            if len(results) != size:
                raise LoadError(
                    f"{type(handler).__name__}.predict returned {len(results)} results for a "
                    f"batch of {size}; it must return one per item"
                )
            first = handler.postprocess(results[0])
            if isinstance(handler, TorchModelHandler) and not self.outputs:
                handler.describe_outputs(first)
                self.outputs = handler.outputs
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self) -> None:
        """Start batching; call on the event loop once `load` has finished."""
        threaded = self.config.predict_thread
        if threaded is None:
            # A GPU model runs on its own thread so the loop decodes the next batch meanwhile;
            # on the CPU the hop costs more than it saves.
            threaded = self.device.type == "cuda"
        if threaded:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"predict-{self.name}")
        self._batcher = Batcher(
            self.name,
            self._handler.predict,
            max_batch_size=self.config.max_batch_size,
            max_delay_s=self.config.max_delay_ms / 1000,
            queue_limit=self.config.max_queue,
            executor=self._executor,
            observe_batch=self._observe_batch,
        )
        self._batcher.start()
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self._batcher is not None:
            await self._batcher.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def _observe_batch(self, batch: Sequence[Work], started_ns: int, finished_ns: int) -> None:
        rows = sum(w.rows for w in batch)
        self.metrics.batch_size.observe(self._labels, rows)
        self.stats.batch((w.queued_ns for w in batch), started_ns, finished_ns, rows)

    # --- serving ------------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return 0 if self._batcher is None else len(self._batcher.queue)

    def arriving(self, delta: int) -> None:
        """Count a request that is being decoded, so the batcher knows more is on its way."""
        if self._batcher is not None:
            self._batcher.queue.arriving += delta

    async def infer(self, request: InferRequest) -> dict[str, Any]:
        """Run one request through the pipeline and return its named outputs."""
        batcher, item, rows = self._admit(request)
        result = await batcher.submit(item, rows, self.config.timeout_s)
        return self.finish(result, rows)

    def enqueue(self, request: InferRequest, answer: Completion) -> tuple[int, TimerHandle]:
        """Check and queue one request whose result goes to `answer` (the HTTP hot path).

        Returns its rows, for `finish`, and the timer that answers 504; cancel it once answered.
        """
        batcher, item, rows = self._admit(request)
        return rows, batcher.enqueue(item, rows, answer, self.config.timeout_s)

    def _admit(self, request: InferRequest) -> tuple[Batcher, Any, int]:
        """Input checks and preprocess: the batch item of a request and its rows."""
        batcher = self._batcher
        if batcher is None or not self.ready:
            raise Unavailable(f"model {self.name!r} is not ready yet")
        started = time.perf_counter_ns()
        inputs, rows = self._check_inputs(request)
        item = self._handler.preprocess(inputs)
        rows_of = self._rows_of
        if rows_of is not None:
            rows = rows_of(item)
        self.stats.compute_input.add(time.perf_counter_ns() - started)
        return batcher, item, rows

    def finish(self, result: Any, rows: int) -> dict[str, Any]:
        """Postprocess one request's result from its batch into its named outputs."""
        answered = time.perf_counter_ns()
        outputs: dict[str, Any] = self._handler.postprocess(result)
        if self._output_dtypes:
            outputs = {k: _as_declared(v, self._output_dtypes.get(k)) for k, v in outputs.items()}
        self.stats.compute_output.add(time.perf_counter_ns() - answered)
        self.stats.inference_count += rows
        return outputs

    def _check_inputs(self, request: InferRequest) -> tuple[dict[str, Any], int]:
        given = {t.name: t for t in request.inputs}
        if len(given) != len(request.inputs):
            raise BadRequest("an input name appears twice in the request")
        if not self._input_names.issuperset(given):
            unknown = sorted(set(given) - self._input_names)
            raise BadRequest(
                f"model {self.name!r} has no input {unknown[0]!r}; its inputs are "
                f"{_spec_text(self.inputs)}"
            )
        values: dict[str, Any] = {}
        rows = 1
        for spec in self.inputs:
            tensor = given.get(spec.name)
            if tensor is None:
                raise BadRequest(f"missing input {spec.name!r}: expected {spec}")
            if tensor.datatype != spec.datatype:
                raise BadRequest(
                    f"input {spec.name!r} is {tensor.datatype}; expected {spec.datatype} ({spec})"
                )
            if len(tensor.shape) != len(spec.shape) or any(
                want != -1 and want != got
                for want, got in zip(spec.shape, tensor.shape, strict=True)
            ):
                raise BadRequest(
                    f"input {spec.name!r} has shape {list(tensor.shape)}; expected "
                    f"{list(spec.shape)} (-1 is any size)"
                )
            values[spec.name] = tensor.data
        if self._batched_rows:
            dims = {t.shape[0] for t in request.inputs if t.shape}
            if len(dims) > 1:
                raise BadRequest(f"inputs disagree on the batch dimension: {sorted(dims)}")
            rows = dims.pop() if dims else 1
            if rows < 1:
                raise BadRequest("the batch dimension of the inputs is 0; send at least one sample")
            if rows > self.config.max_batch_size:
                raise BadRequest(
                    f"the request holds {rows} samples; model {self.name!r} takes at most "
                    f"{self.config.max_batch_size} per request (its max_batch_size)"
                )
        return values, rows

    def metadata(self) -> dict[str, Any]:
        """The V2 model metadata document."""

        def tensors(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
            return [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in specs]

        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.platform,
            "inputs": tensors(self.inputs),
            "outputs": tensors(self.outputs),
            "parameters": {
                "max_batch_size": self.config.max_batch_size,
                "max_delay_ms": self.config.max_delay_ms,
                "device": str(self.device),
            },
        }

    def model_config(self) -> dict[str, Any]:
        """The model's configuration in the shape of Triton's model configuration extension.

        A torch model batches along dim 0, so, as in Triton, `max_batch_size` is set and `dims`
        leave the batch dimension out. A handler takes each request's tensors whole
        (`max_batch_size` 0, full shapes), though the server still batches its requests.
        """
        batched = self._batched_rows

        def tensors(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
            return [
                {
                    "name": s.name,
                    "data_type": _TRITON_TYPES.get(s.datatype, f"TYPE_{s.datatype}"),
                    "dims": list(s.shape[1:] if batched and s.shape else s.shape),
                }
                for s in specs
            ]

        gpu = self.device.type == "cuda"
        instance: dict[str, Any] = {
            "name": self.name,
            "kind": "KIND_GPU" if gpu else "KIND_CPU",
            "count": 1,
        }
        if gpu:
            instance["gpus"] = [self.device.index or 0]
        return {
            "name": self.name,
            "platform": self.platform,
            "backend": "python" if self.platform == "python_handler" else "pytorch",
            "version_policy": {"latest": {"num_versions": 1}},
            "max_batch_size": self.config.max_batch_size if batched else 0,
            "input": tensors(self.inputs),
            "output": tensors(self.outputs),
            "dynamic_batching": {
                "max_queue_delay_microseconds": round(self.config.max_delay_ms * 1000),
            },
            "instance_group": [instance],
            "parameters": {
                "precision": {"string_value": self.config.precision},
                "device": {"string_value": str(self.device)},
            },
        }


def _as_declared(value: Any, dtype: torch.dtype | None) -> Any:
    if dtype is not None and isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(dtype)
    return value


# Triton's names for the V2 datatypes; BYTES is TYPE_STRING there.
_TRITON_TYPES = {"BYTES": "TYPE_STRING"}
