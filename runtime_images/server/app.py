"""The ASGI application: routes of the V2 REST protocol, auth, limits and readiness.

It is a bare ASGI callable rather than a framework app: a request to /infer touches one dict
lookup for the route, one pass over the headers, and the shared pipeline in `runtime`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from .config import ServerConfig
from .errors import (
    BadRequest,
    LoadError,
    MethodNotAllowed,
    ModelError,
    NotFound,
    PayloadTooLarge,
    ServerError,
    Unauthorized,
    Unavailable,
)
from .metrics import Metrics
from .openapi import openapi_document
from .protocol import encode_infer_response, parse_infer_request
from .runtime import ModelRuntime

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SERVER_NAME = "fermion"
SERVER_VERSION = "0.1.0"
log = logging.getLogger("fermion.server")

_JSON = (b"content-type", b"application/json")
_OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/metrics"})


class ServingApp:
    """Serves the models of a ServerConfig over the V2 REST protocol."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.models = {m.name: ModelRuntime(m, self.metrics) for m in config.models}
        self.draining = False
        self.load_error: str | None = None
        self.on_load_failure: Callable[[], None] = lambda: None
        self.on_ready: Callable[[ServingApp], None] = lambda app: None
        self._tokens = tuple(t.encode() for t in config.auth_tokens)
        self._loader: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Infer requests being handled, over every model."""
        return sum(m.in_flight for m in self.models.values())

    @property
    def ready(self) -> bool:
        return not self.draining and all(m.ready for m in self.models.values())

    async def startup(self) -> None:
        """Begin loading the models in the background: the server is live at once."""
        self._loader = asyncio.get_running_loop().create_task(self._load_all())

    async def _load_all(self) -> None:
        for runtime in self.models.values():
            try:
                await asyncio.to_thread(runtime.load)
            except LoadError as exc:
                self.load_error = str(exc)
                log.error("cannot serve model %r: %s", runtime.name, exc)
                self.on_load_failure()
                return
            runtime.start()
        log.info("ready: %s", ", ".join(self.models))
        self.on_ready(self)

    async def shutdown(self) -> None:
        if self._loader is not None and not self._loader.done():
            self._loader.cancel()
        for runtime in self.models.values():
            await runtime.stop()

    def begin_drain(self) -> None:
        """Stop being ready and refuse new work; requests in flight finish."""
        if not self.draining:
            log.info("draining: %d requests in flight", self.in_flight)
        self.draining = True

    # --- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        headers: dict[bytes, bytes] = dict(scope["headers"])
        try:
            if self._tokens and path not in _OPEN_PATHS:
                self._authorize(headers)
            if path.startswith("/v2/models/"):
                await self._model_route(path, method, headers, receive, send)
                return
            status, body, extra = self._plain_route(path, method)
        except ServerError as exc:
            await _error(send, exc)
            return
        await _respond(send, status, body, extra)

    def _authorize(self, headers: dict[bytes, bytes]) -> None:
        value = headers.get(b"authorization", b"")
        scheme, _, token = value.partition(b" ")
        if scheme.lower() != b"bearer" or not any(
            hmac.compare_digest(token.strip(), known) for known in self._tokens
        ):
            raise Unauthorized()

    def _plain_route(self, path: str, method: str) -> tuple[int, bytes, tuple[Any, ...]]:
        if method not in ("GET", "HEAD"):
            if path in ("/v2/health/live", "/v2/health/ready", "/v2", "/metrics", "/openapi.json"):
                raise MethodNotAllowed(f"{method} is not allowed on {path}; use GET")
            raise NotFound(f"no route {method} {path}")
        if path == "/v2/health/live":
            return 200, b'{"live":true}', (_JSON,)
        if path == "/v2/health/ready":
            if self.ready:
                return 200, b'{"ready":true}', (_JSON,)
            raise Unavailable(self._not_ready_reason())
        if path == "/v2":
            document = {
                "name": SERVER_NAME,
                "version": SERVER_VERSION,
                "extensions": ["binary_tensor_data", "model_repository_readonly"],
            }
            return 200, orjson.dumps(document), (_JSON,)
        if path == "/metrics":
            self._refresh_gauges()
            return 200, self.metrics.render(), ((b"content-type", b"text/plain; version=0.0.4"),)
        if path == "/openapi.json":
            return 200, orjson.dumps(openapi_document(SERVER_VERSION)), (_JSON,)
        raise NotFound(f"no route {method} {path}; see /openapi.json")

    def _not_ready_reason(self) -> str:
        if self.draining:
            return "the server is shutting down"
        if self.load_error is not None:
            return f"a model failed to load: {self.load_error}"
        waiting = [name for name, m in self.models.items() if not m.ready]
        return f"still loading and warming up: {', '.join(waiting)}"

    def _refresh_gauges(self) -> None:
        for name, runtime in self.models.items():
            self.metrics.queue_depth.set((name,), runtime.queue_depth)
            self.metrics.in_flight.set((name,), runtime.in_flight)

    def _find_model(self, name: str, version: str | None) -> ModelRuntime:
        runtime = self.models.get(name)
        if runtime is None:
            known = ", ".join(self.models)
            raise NotFound(f"no model {name!r}; this server serves: {known}")
        if version is not None and version != runtime.version:
            raise NotFound(
                f"model {name!r} has no version {version!r}; it serves version {runtime.version!r}"
            )
        return runtime

    async def _model_route(
        self, path: str, method: str, headers: dict[bytes, bytes], receive: Receive, send: Send
    ) -> None:
        # /v2/models/{name}[/versions/{version}][/ready|/infer]
        parts = path[len("/v2/models/") :].split("/")
        name = parts[0]
        version = None
        rest = parts[1:]
        if len(rest) >= 2 and rest[0] == "versions":
            version, rest = rest[1], rest[2:]
        action = rest[0] if rest else ""
        if len(rest) > 1 or action not in ("", "ready", "infer") or not name:
            raise NotFound(f"no route {method} {path}; see /openapi.json")
        runtime = self._find_model(name, version)
        if action == "infer":
            if method != "POST":
                raise MethodNotAllowed(f"{method} is not allowed on {path}; use POST")
            await self._infer(runtime, headers, receive, send)
            return
        if method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{method} is not allowed on {path}; use GET")
        if action == "ready":
            if runtime.ready and not self.draining:
                body = orjson.dumps({"name": name, "ready": True})
                await _respond(send, 200, body, (_JSON,))
                return
            raise Unavailable(self._not_ready_reason())
        await _respond(send, 200, orjson.dumps(runtime.metadata()), (_JSON,))

    async def _infer(
        self, runtime: ModelRuntime, headers: dict[bytes, bytes], receive: Receive, send: Send
    ) -> None:
        if self.draining:
            raise Unavailable("the server is shutting down; retry on another replica")
        started = time.perf_counter()
        header_length = _int_header(headers, b"inference-header-content-length")
        protocol = "json" if header_length is None else "binary"
        code = 500
        runtime.in_flight += 1
        runtime.arriving(1)
        arriving = True
        try:
            body = await self._read_body(headers, receive)
            request = parse_infer_request(body, header_length)
            runtime.arriving(-1)
            arriving = False
            outputs = await runtime.infer(request)
            encoded = encode_infer_response(runtime.name, runtime.version, request, outputs)
            code = 200
        except ServerError as exc:
            code = exc.status
            await _error(send, exc)
            return
        except Exception as exc:  # a handler's pre- or postprocess may raise anything
            log.exception("model %r failed on a request", runtime.name)
            await _error(send, ModelError(runtime.name, exc))
            return
        finally:
            if arriving:
                runtime.arriving(-1)
            runtime.in_flight -= 1
            labels = (runtime.name,)
            self.metrics.requests.inc((runtime.name, str(code), protocol))
            self.metrics.latency.observe(labels, time.perf_counter() - started)
        if encoded.header_length is None:
            await _respond(send, 200, encoded.body, (_JSON,))
        else:
            extra = (
                (b"content-type", b"application/octet-stream"),
                (b"inference-header-content-length", str(encoded.header_length).encode()),
            )
            await _respond(send, 200, encoded.body, extra)

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytearray:
        limit = self.config.max_request_bytes
        declared = _int_header(headers, b"content-length")
        if declared is not None and declared > limit:
            raise PayloadTooLarge(declared, limit)
        # A bytearray is writable, so binary tensors can be viewed by torch without a copy.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Unavailable("the client disconnected")
            body += message.get("body", b"")
            if len(body) > limit:
                raise PayloadTooLarge(len(body), limit)
            if not message.get("more_body", False):
                return body


def _int_header(headers: dict[bytes, bytes], name: bytes) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"header {name.decode()} must be an integer, not {value!r}") from None


async def _respond(send: Send, status: int, body: bytes, headers: tuple[Any, ...]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, exc: ServerError) -> None:
    body = orjson.dumps({"error": exc.message})
    await _respond(send, exc.status, body, (_JSON, *exc.headers))
