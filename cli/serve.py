"""`fermion serve TARGET`: run the serving runtime locally, exactly as a runtime image runs it."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fermion.cli.console import out
from fermion.stacks.errors import FermionError

if TYPE_CHECKING:
    from fermion.runtime_images.server.app import ServingApp

_SERVE_MODULES = ("torch", "numpy", "orjson", "uvicorn")
_INLINE_ELEMENTS = 16


class ServeDependencyError(FermionError):
    """The serving extra is not installed."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(
            f"fermion serve needs {', '.join(missing)}, which this environment lacks. Install "
            "the serving extra: pip install 'fermion[serve]'"
        )


def serve(
    target: Annotated[
        Path,
        typer.Argument(
            help="A TorchScript (.pt) or torch.export (.pt2) file, or a model folder (with a "
            "handler.py, or one model file).",
            show_default=False,
        ),
    ],
    name: Annotated[
        str | None, typer.Option(help="Model name in URLs. Default: from TARGET.")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    max_batch_size: Annotated[int, typer.Option(help="Samples per batch.")] = 8,
    max_delay_ms: Annotated[float, typer.Option(help="Longest wait to fill a batch.")] = 5.0,
    inputs: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            help="An input tensor NAME:DTYPE:SHAPE, e.g. input__0:FP32:-1,256; repeat for more. "
            "TorchScript needs it; torch.export files and handlers declare their own.",
            show_default=False,
        ),
    ] = None,
    handler: Annotated[
        str | None,
        typer.Option(help="FILE.py:CLASS with load/preprocess/predict/postprocess hooks."),
    ] = None,
    device: Annotated[
        str, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:N.")
    ] = "auto",
    workers: Annotated[int, typer.Option(help="Server processes sharing the port.")] = 1,
    timeout_s: Annotated[float, typer.Option(help="Per-request time limit (504 after).")] = 30.0,
) -> None:
    """Serve a model locally over the Open Inference Protocol (KServe V2), as the image would."""
    missing = [m for m in _SERVE_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise ServeDependencyError(missing)
    from fermion.runtime_images.server.__main__ import main

    argv = [
        str(target),
        "--host",
        host,
        "--port",
        str(port),
        "--max-batch-size",
        str(max_batch_size),
        "--max-delay-ms",
        str(max_delay_ms),
        "--device",
        device,
        "--workers",
        str(workers),
        "--timeout-s",
        str(timeout_s),
        "--log-level",
        "warning",
    ]
    if name is not None:
        argv += ["--name", name]
    if handler is not None:
        argv += ["--handler", handler]
    for spec in inputs or []:
        argv += ["--input", spec]
    out.print(f"fermion serve: loading {target} ...")
    code = main(argv, on_ready=lambda app: _announce(app, host, port), prog="fermion serve")
    raise typer.Exit(code)


def _announce(app: ServingApp, host: str, port: int) -> None:
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
    base = f"http://{shown}:{port}"
    for runtime in app.models.values():
        meta = runtime.metadata()
        out.print(
            f"[bold green]ready[/]: model [bold]{runtime.name}[/] at {base}/v2/models/"
            f"{runtime.name}"
        )
        out.print(f"  metadata: curl {base}/v2/models/{runtime.name}")
        out.print(f"  infer:    {example_curl(base, runtime.name, meta['inputs'])}", soft_wrap=True)
    out.print("Press Ctrl-C to stop; requests in flight finish first.")


def example_curl(base: str, model: str, inputs: list[dict[str, Any]]) -> str:
    """A ready-to-paste command that sends one sample to the model."""
    tensors = []
    total = 0
    for spec in inputs:
        shape = [1 if d == -1 else d for d in spec["shape"]] or [1]
        count = 1
        for d in shape:
            count *= d
        total += count
        value: Any = (
            "hello" if spec["datatype"] == "BYTES" else (False if spec["datatype"] == "BOOL" else 0)
        )
        tensors.append(
            {
                "name": spec["name"],
                "shape": shape,
                "datatype": spec["datatype"],
                "count": count,
                "value": value,
            }
        )
    url = f"{base}/v2/models/{model}/infer"
    header = "-H 'Content-Type: application/json'"
    if total <= _INLINE_ELEMENTS:
        body = {
            "inputs": [
                {
                    "name": t["name"],
                    "shape": t["shape"],
                    "datatype": t["datatype"],
                    "data": [t["value"]] * t["count"],
                }
                for t in tensors
            ]
        }
        return f"curl -s -X POST {url} {header} -d {shlex.quote(json.dumps(body))}"
    parts = ", ".join(
        f'{{"name": {json.dumps(t["name"])}, "shape": {t["shape"]}, '
        f'"datatype": {json.dumps(t["datatype"])}, '
        f'"data": [{json.dumps(t["value"])}] * {t["count"]}}}'
        for t in tensors
    )
    script = f'import json; print(json.dumps({{"inputs": [{parts}]}}))'
    return f"python3 -c {shlex.quote(script)} | curl -s -X POST {url} {header} -d @-"
