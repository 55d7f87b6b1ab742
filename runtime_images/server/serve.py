"""Running the server: uvicorn with fermion's lifecycle.

Live as soon as the process listens; ready once every model has loaded and warmed up. On SIGTERM
(or Ctrl-C) the server turns not-ready at once, answers new requests with 503, lets the requests
in flight finish, and exits 0 when none is left or the grace period is over. A second signal
exits at once. A model that fails to load stops the process with exit code 1.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from .app import ServingApp
from .config import ServerConfig

log = logging.getLogger("fermion.server")


class FermionServer(uvicorn.Server):
    """uvicorn's server, with drain-before-exit and exit-on-load-failure."""

    def __init__(self, config: uvicorn.Config, app: ServingApp, grace_period_s: float) -> None:
        super().__init__(config)
        self.app = app
        self.grace_period_s = grace_period_s
        self.exit_code = 0
        self._drain_deadline: float | None = None
        app.on_load_failure = self._load_failed

    def _load_failed(self) -> None:
        self.exit_code = 1
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_deadline is not None:  # a second signal: stop now
            super().handle_exit(sig, frame)
            return
        self._drain_deadline = time.monotonic() + self.grace_period_s
        self.app.begin_drain()

    async def on_tick(self, counter: int) -> bool:
        deadline = self._drain_deadline
        if deadline is not None and not self.should_exit:
            idle = self.app.in_flight == 0
            if idle or time.monotonic() >= deadline:
                if not idle:
                    log.warning("grace period over with %d requests in flight", self.app.in_flight)
                self.should_exit = True
        return await super().on_tick(counter)


def build_server(
    config: ServerConfig, on_ready: Callable[[ServingApp], None] | None = None
) -> FermionServer:
    app = ServingApp(config)
    if on_ready is not None:
        app.on_ready = on_ready
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        access_log=config.access_log,
        lifespan="on",
        # Connections left open after the drain get this long to finish their last response.
        timeout_graceful_shutdown=max(1, int(config.grace_period_s)),
        server_header=False,
        date_header=False,
        # No proxy-header rewriting: the server never reads the client's address.
        proxy_headers=False,
        **_fast_stack(),
    )
    return FermionServer(uv_config, app, config.grace_period_s)


def _fast_stack() -> dict[str, Any]:
    # httptools and uvloop when installed (they are, in the images); uvicorn's defaults otherwise.
    options: dict[str, Any] = {}
    try:
        import httptools  # noqa: F401

        options["http"] = "httptools"
    except ImportError:
        pass
    try:
        import uvloop  # noqa: F401

        options["loop"] = "uvloop"
    except ImportError:
        pass
    return options


def run(config: ServerConfig, on_ready: Callable[[ServingApp], None] | None = None) -> int:
    """Serve until told to stop; the process's exit code."""
    server = build_server(config, on_ready)
    server.run()
    return server.exit_code
