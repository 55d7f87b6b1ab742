"""Running the server: uvicorn with fermion's lifecycle.

Live as soon as the process listens; ready once every model has loaded and warmed up. On SIGTERM:
1. the server turns not-ready at once, and goes on serving every request that reaches it;
2. after `drain_delay_s` (none for Ctrl-C) it closes its listener, first taking in the
   connections the kernel has already accepted, so none is reset;
3. every response from then on says `Connection: close`, so each keep-alive connection closes
   cleanly after its last answer; a connection that stays idle for `IDLE_CLOSE_S` is closed;
4. it exits 0 once the requests in flight are answered, or when the grace period is over.
A second signal exits at once. A model that fails to load stops the process with exit code 1.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from .app import ServingApp
from .config import ServerConfig

log = logging.getLogger("fermion.server")

# How long a keep-alive connection that is idle when the listener closes may still send one
# last request before it is closed: a busy client sends its next one within milliseconds.
IDLE_CLOSE_S = 0.5
_POLL_S = 0.01
# Set to 0 to send every request through the ASGI app, as before the hot path.
HOT_PATH_ENV = "FERMION_HOT_PATH"


class FermionServer(uvicorn.Server):
    """uvicorn's server, with the drain above and exit-on-load-failure."""

    def __init__(
        self,
        config: uvicorn.Config,
        app: ServingApp,
        grace_period_s: float,
        drain_delay_s: float = 0.0,
    ) -> None:
        super().__init__(config)
        self.app = app
        self.grace_period_s = grace_period_s
        self.drain_delay_s = drain_delay_s
        self.exit_code = 0
        self._deadline: float | None = None  # when the grace period ends
        self._close_at: float | None = None  # when the listener closes
        app.on_load_failure = self._load_failed

    def _load_failed(self) -> None:
        self.exit_code = 1
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._deadline is not None:  # a second signal: stop now
            self.force_exit = True
            super().handle_exit(sig, frame)
            return
        now = time.monotonic()
        # Ctrl-C is a person at a terminal; SIGTERM is an orchestrator whose load balancer may
        # still be sending requests this way for a moment.
        delay = self.drain_delay_s if sig == signal.SIGTERM else 0.0
        self._deadline = now + self.grace_period_s
        self._close_at = now + min(delay, self.grace_period_s)
        log.info(
            "draining: not ready; %d requests in flight; the listener closes in %g s",
            self.app.in_flight,
            self._close_at - now,
        )
        self.app.begin_drain()

    async def on_tick(self, counter: int) -> bool:
        if self._close_at is not None and time.monotonic() >= self._close_at:
            self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Close the listener, let every connection finish its last answer, then stop the app."""
        deadline = self._deadline
        if deadline is None:  # a failed load, not a signal
            deadline = time.monotonic() + self.grace_period_s
        await self._close_listeners(sockets)
        self.app.begin_close()
        await self._close_idle(deadline)
        connections = self.server_state.connections
        while connections and not self.force_exit and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_S)
        if connections:
            log.warning(
                "grace period over with %d requests in flight; closing %d connections",
                self.app.in_flight,
                len(connections),
            )
            for connection in list(connections):
                connection.shutdown()
        for task in list(self.server_state.tasks):
            task.cancel(msg="the grace period is over")
        if not self.force_exit:
            await self.lifespan.shutdown()
        log.info("drained; exiting with code %d", self.exit_code)

    async def _close_listeners(self, sockets: list[socket.socket] | None) -> None:
        # A copy of each listening socket keeps it open while the loop stops accepting; the
        # connections the kernel completed meanwhile are then taken in rather than reset.
        listeners = [
            socket.socket(fileno=os.dup(s.fileno()))
            for server in self.servers
            for s in server.sockets or ()
        ]
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        await asyncio.sleep(0)  # let the loop drop its own handles
        accepted: list[socket.socket] = []
        for listener in listeners:
            listener.setblocking(False)
            while True:
                try:
                    accepted.append(listener.accept()[0])
                except OSError:  # BlockingIOError: nothing left to accept
                    break
            listener.close()
        loop = asyncio.get_running_loop()
        for sock in accepted:
            await loop.connect_accepted_socket(self._protocol, sock)
        log.info(
            "listener closed; %d connections open, %d requests in flight",
            len(self.server_state.connections),
            self.app.in_flight,
        )

    def _protocol(self) -> asyncio.Protocol:
        # What uvicorn's own listener makes for each connection.
        protocol: asyncio.Protocol = self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state
        )
        return protocol

    async def _close_idle(self, deadline: float) -> None:
        """Give each idle connection a moment to send one last request, then close it."""
        idle = {c: getattr(c, "cycle", None) for c in self.server_state.connections if _idle(c)}
        until = min(deadline, time.monotonic() + IDLE_CLOSE_S)
        while idle and not self.force_exit and time.monotonic() < until:
            await asyncio.sleep(_POLL_S)
            for connection, cycle in list(idle.items()):
                # Closed, or busy with a request whose answer will close it.
                busy = getattr(connection, "cycle", None) is not cycle
                if busy or connection not in self.server_state.connections:
                    del idle[connection]
        for connection in idle:
            if _idle(connection):
                connection.shutdown()


def _idle(connection: Any) -> bool:
    """No request on the connection: none yet, or its last one answered."""
    cycle = getattr(connection, "cycle", None)
    return cycle is None or bool(cycle.response_complete)


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
        server_header=False,
        date_header=False,
        # No proxy-header rewriting: the server never reads the client's address.
        proxy_headers=False,
        **_fast_stack(app, config),
    )
    return FermionServer(uv_config, app, config.grace_period_s, config.drain_delay_s)


def _fast_stack(app: ServingApp, config: ServerConfig) -> dict[str, Any]:
    # httptools and uvloop when installed (they are, in the images); uvicorn's defaults otherwise.
    # With httptools, infer requests take the hot path below ASGI (hot_path.py), unless every
    # request is to be logged (uvicorn's access log sits in the ASGI cycle) or
    # FERMION_HOT_PATH=0 turns it off.
    options: dict[str, Any] = {}
    try:
        import httptools  # noqa: F401

        options["http"] = "httptools"
    except ImportError:
        pass
    else:
        if hot_path_enabled(config):
            # hot_path builds on uvicorn's httptools protocol: imported only where httptools
            # is, so start-up without it still works.
            from .hot_path import hot_path_protocol

            options["http"] = hot_path_protocol(app)
    try:
        import uvloop  # noqa: F401

        options["loop"] = "uvloop"
    except ImportError:
        pass
    return options


# The hot path subclasses uvicorn's httptools protocol and reads its internals (the parser, the
# request cycle, the status lines), which uvicorn may change in any release: it is used only
# with the uvicorn releases it was tested on (the images pin one of them).
HOT_PATH_UVICORN = ("0.54.",)
_OFF = {"0", "false", "no", "off"}


def hot_path_enabled(config: ServerConfig) -> bool:
    """Whether infer requests may take the hot path below ASGI."""
    if config.access_log or os.environ.get(HOT_PATH_ENV, "1").strip().lower() in _OFF:
        return False
    if not uvicorn.__version__.startswith(HOT_PATH_UVICORN):
        log.info(
            "infer requests go through the ASGI app: the hot path is tested with uvicorn %s, "
            "not %s (install uvicorn==0.54.0 for it)",
            " or ".join(f"{v}x" for v in HOT_PATH_UVICORN),
            uvicorn.__version__,
        )
        return False
    return True


def run(
    config: ServerConfig,
    on_ready: Callable[[ServingApp], None] | None = None,
    sockets: list[socket.socket] | None = None,
) -> int:
    """Serve until told to stop (on `sockets` when given, already bound); the exit code."""
    server = build_server(config, on_ready)
    server.run(sockets=sockets)
    return server.exit_code
