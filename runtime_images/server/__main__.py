"""`python -m <server package> MODEL [options]`: the entrypoint of every runtime image, and of
`fermion serve`.

Exit codes: 0 after a clean shutdown, 1 when a model cannot be loaded or the port cannot be
had, 2 for bad options.
"""

from __future__ import annotations

import argparse
import errno
import logging
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .config import (
    ConfigError,
    ServerConfig,
    load_config_file,
    model_config_from_options,
    server_config_from_options,
    tokens_from_environment,
)
from .options import OPTIONS, add_options, option_values

if TYPE_CHECKING:
    from .app import ServingApp

log = logging.getLogger("fermion.server")
_BACKLOG = 2048  # uvicorn's own default


class ListenError(Exception):
    """The address and port cannot be listened on; the message says why and what to change."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        self.port = port
        if error.errno == errno.EADDRINUSE:
            problem = f"port {port} is already in use on {host}; pick another with --port"
        else:
            problem = f"cannot listen on {host}:{port} ({error.strerror}); check --host and --port"
        super().__init__(problem)


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket listening on host:port. The server takes its port before it loads anything, so
    a taken port fails at once, before any model is loaded or any readiness is reported."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        raise ListenError(host, port, exc) from None
    return sock


def build_parser(prog: str = "fermion-server") -> argparse.ArgumentParser:
    """The entrypoint's options: the model or a serving.json, then the shared OPTIONS."""
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
    add_options(p)
    return p


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """Merge a serving.json (if any) with the command line; flags win."""
    values = option_values(args)
    base = load_config_file(args.config) if args.config is not None else None
    models = base.models if base is not None else ()
    model_flags = args.model is not None or any(
        values[o.field] is not None for o in OPTIONS if o.scope == "model"
    )
    if len(models) > 1 and model_flags:
        raise ConfigError("model flags apply to a config with one model; edit serving.json")
    model = model_config_from_options(args.model, values, models[0] if models else None)
    tokens = tokens_from_environment(token_file=args.auth_token_file)
    if tokens:
        values["auth_tokens"] = tokens
    server = base if base is not None else ServerConfig(models=(model,))
    return server_config_from_options(replace(server, models=(model, *models[1:])), values)


def _serve_workers(config: ServerConfig, sock: socket.socket) -> int:
    """Fork `workers` servers that share one listening socket; forward SIGTERM to them."""
    # uvicorn and torch load only once serving begins, which keeps start-up and --help fast.
    from .serve import build_server

    sock.set_inheritable(True)
    context = multiprocessing.get_context("fork")
    warm = context.Value("i", 0)

    def one_more_warm(_app: object) -> None:
        with warm.get_lock():
            warm.value += 1

    def child() -> None:
        server = build_server(config, one_more_warm)
        server.app.peers_ready = lambda: warm.value >= config.workers
        server.run(sockets=[sock])
        sys.exit(server.exit_code)

    workers = [context.Process(target=child, daemon=False) for _ in range(config.workers)]
    for worker in workers:
        worker.start()
    # The workers hold the listener now. The parent's copy would keep it open after they close
    # theirs on SIGTERM, and connections would queue there with nobody to accept them.
    sock.close()

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
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        sock = listen_socket(config.host, config.port)
    except ListenError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 1
    if config.workers > 1:
        return _serve_workers(config, sock)
    # uvicorn and torch load only once serving begins, which keeps start-up and --help fast.
    from .serve import run

    return run(config, on_ready, sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
