"""`python -m <server package> MODEL [options]`: the entrypoint of every runtime image, and of
`fermion serve`.

Exit codes: 0 after a clean shutdown, 1 when a model cannot be loaded, 2 for bad options.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .config import (
    ConfigError,
    ModelConfig,
    ServerConfig,
    load_config_file,
    parse_tensor_spec,
    tokens_from_environment,
)

if TYPE_CHECKING:
    from .app import ServingApp

log = logging.getLogger("fermion.server")


def _parser(prog: str = "fermion-server") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Serve a torch model over the Open Inference Protocol (KServe V2) REST API.",
    )
    p.add_argument(
        "model",
        nargs="?",
        help="TorchScript (.pt) or torch.export (.pt2) file, or "
        "a model folder; with --handler, the folder passed to the handler's load()",
    )
    p.add_argument("--config", type=Path, help="serving.json with the server and its models")
    p.add_argument("--name", help="model name in URLs (default: from the file name)")
    p.add_argument("--model-version", default=None, help="model version (default: 1)")
    p.add_argument(
        "--handler", help="FILE.py:CLASS or MODULE:CLASS with load/preprocess/predict/postprocess"
    )
    p.add_argument("--format", choices=("auto", "torchscript", "export", "handler"))
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME:DTYPE:SHAPE",
        help="an input tensor, e.g. input__0:FP32:-1,256 (repeat for more)",
    )
    p.add_argument("--host", help="address to listen on (default: 0.0.0.0)")
    p.add_argument("--port", type=int, help="port (default: 8080)")
    p.add_argument("--max-batch-size", type=int, help="samples per batch (default: 8)")
    p.add_argument("--max-delay-ms", type=float, help="longest wait to fill a batch (default: 5)")
    p.add_argument("--max-queue", type=int, help="queued requests before 429 (default: 512)")
    p.add_argument("--timeout-s", type=float, help="per-request time limit, 504 after (default 30)")
    p.add_argument("--device", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument(
        "--predict-thread",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the model on its own thread (default: on CUDA only)",
    )
    p.add_argument("--workers", type=int, help="server processes sharing the port (default: 1)")
    p.add_argument("--max-request-bytes", type=int, help="largest request body (default: 64 MiB)")
    p.add_argument("--grace-period-s", type=float, help="drain time on SIGTERM (default: 30)")
    p.add_argument(
        "--auth-token-file",
        type=Path,
        help="file of bearer tokens, one per line (also $FERMION_AUTH_TOKENS, comma-separated)",
    )
    p.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"))
    p.add_argument("--access-log", action="store_true", default=None, help="log every request")
    return p


def default_model_name(model: str) -> str:
    """A model name from its file or folder name: `classifier.pt` serves as `classifier`."""
    stem = Path(model.rstrip("/")).stem or "model"
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", stem).strip("-.") or "model"
    return name if name[0].isalnum() else f"m{name}"


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """Merge a serving.json (if any) with the command line; flags win."""
    if args.config is not None:
        base = load_config_file(args.config)
    elif args.model is None:
        raise ConfigError("give a model path, or --config serving.json")
    else:
        base = ServerConfig(
            models=(ModelConfig(name=default_model_name(args.model), path=args.model),)
        )
    model = base.models[0]
    if len(base.models) > 1 and any(
        v is not None for v in (args.model, args.name, args.handler, args.max_batch_size)
    ):
        raise ConfigError("model flags apply to a config with one model; edit serving.json")
    model_fields = {
        "path": args.model,
        "name": args.name,
        "version": args.model_version,
        "handler": args.handler,
        "format": args.format,
        "max_batch_size": args.max_batch_size,
        "max_delay_ms": args.max_delay_ms,
        "max_queue": args.max_queue,
        "timeout_s": args.timeout_s,
        "device": args.device,
        "precision": args.precision,
        "compile": args.compile,
        "predict_thread": args.predict_thread,
    }
    if args.input:
        model_fields["inputs"] = tuple(parse_tensor_spec(t) for t in args.input)
    if args.handler is not None and args.format is None:
        model_fields["format"] = "handler"
    model = replace(model, **{k: v for k, v in model_fields.items() if v is not None})
    server_fields = {
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "max_request_bytes": args.max_request_bytes,
        "grace_period_s": args.grace_period_s,
        "log_level": args.log_level,
        "access_log": args.access_log,
    }
    tokens = tokens_from_environment(token_file=args.auth_token_file)
    if tokens:
        server_fields["auth_tokens"] = tokens
    models = (model, *base.models[1:])
    return replace(base, models=models, **{k: v for k, v in server_fields.items() if v is not None})


def _serve_workers(config: ServerConfig) -> int:
    """Fork `workers` servers that share one listening socket; forward SIGTERM to them."""
    # uvicorn and torch load only once serving begins, which keeps start-up and --help fast.
    from .serve import build_server

    sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    sock.set_inheritable(True)
    context = multiprocessing.get_context("fork")

    def child() -> None:
        server = build_server(config)
        server.run(sockets=[sock])
        sys.exit(server.exit_code)

    workers = [context.Process(target=child, daemon=False) for _ in range(config.workers)]
    for worker in workers:
        worker.start()

    def forward(sig: int, _frame: object) -> None:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for worker in workers:
        worker.join()
    return max((w.exitcode or 0) for w in workers)


def main(
    argv: Sequence[str] | None = None,
    on_ready: Callable[[ServingApp], None] | None = None,
    prog: str = "fermion-server",
) -> int:
    """Parse options and serve; `on_ready` runs once every model is warm (one worker only)."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if config.workers > 1:
        return _serve_workers(config)
    # uvicorn and torch load only once serving begins, which keeps start-up and --help fast.
    from .serve import run

    return run(config, on_ready)


if __name__ == "__main__":
    sys.exit(main())
