"""The ASGI application: routes of the V2 REST protocol, auth, limits and readiness.

It is a bare ASGI callable rather than a framework app: a request to /infer touches a dict lookup
or two for the route (`routing`), one pass over the headers, and the shared pipeline of
`served_model`.
The route table in `ServingApp.routes` is the one place the routes are written.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import orjson

from .config import ServerConfig
from .errors import (
    BadRequest,
    ClientDisconnected,
    LoadError,
    ModelError,
    NotFound,
    PayloadTooLarge,
    ServerError,
    Unauthorized,
    Unavailable,
    describe,
)
from .metrics import Metrics
from .openapi import INFER_OPERATION, openapi_document
from .protocol import EncodedResponse, encode_infer_response, parse_infer_request
from .routing import JSON, Request, Response, Route, Router
from .served_model import ServedModel

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SERVER_NAME = "fermion"
SERVER_VERSION = "0.1.0"
log = logging.getLogger("fermion.server")

_PROMETHEUS = ((b"content-type", b"text/plain; version=0.0.4"),)
_OCTETS = (b"content-type", b"application/octet-stream")
_CLOSE = (b"connection", b"close")


class ServingApp:
    """Serves the models of a ServerConfig over the V2 REST protocol."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.models = {m.name: ServedModel(m, self.metrics) for m in config.models}
        self.draining = False
        self._closing = False
        self.load_error: str | None = None
        self.on_load_failure: Callable[[], None] = lambda: None
        self.on_ready: Callable[[ServingApp], None] = lambda app: None
        # With several workers on one port, a probe reaches any one of them: each reports ready
        # only once all are, or a pod would take traffic that its loading workers answer 503.
        self.peers_ready: Callable[[], bool] = lambda: True
        self._tokens = tuple(t.encode() for t in config.auth_tokens)
        self._loader: asyncio.Task[None] | None = None
        self.router = Router(self.routes())

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Infer requests being handled, over every model."""
        return sum(m.in_flight for m in self.models.values())

    @property
    def ready(self) -> bool:
        return (
            not self.draining and all(m.ready for m in self.models.values()) and self.peers_ready()
        )

    async def startup(self) -> None:
        """Begin loading the models in the background: the server is live at once."""
        self._loader = asyncio.get_running_loop().create_task(self._load_all())
        self._loader.add_done_callback(self._loaded)

    async def _load_all(self) -> None:
        for model in self.models.values():
            try:
                await asyncio.to_thread(model.load)
            except LoadError as exc:
                self._fail(model.name, " ".join(str(exc).split()))
                return
            model.start()
        log.info("ready: %s", ", ".join(self.models))
        self.on_ready(self)

    def _loaded(self, task: asyncio.Task[None]) -> None:
        # Whatever else stops the models from loading stops the server too, instead of leaving
        # it live and never ready.
        if not task.cancelled() and (exc := task.exception()) is not None:
            waiting = [name for name, m in self.models.items() if not m.ready]
            self._fail(", ".join(waiting), describe(exc))

    def _fail(self, model: str, reason: str) -> None:
        self.load_error = reason
        # One line that names the model and the problem, and no traceback: the fix is in it.
        log.error("cannot serve model %r: %s", model, reason)
        self.on_load_failure()

    async def shutdown(self) -> None:
        if self._loader is not None and not self._loader.done():
            self._loader.cancel()
        for model in self.models.values():
            await model.stop()

    def begin_drain(self) -> None:
        """Stop being ready; requests go on being served until the listener closes."""
        self.draining = True

    def begin_close(self) -> None:
        """The listener has closed: every answer from now on closes its connection."""
        self.draining = True
        self._closing = True

    # --- routes -------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        """The route table: the one place the server's routes are written."""
        inference_errors = (400, 404, 413, 429, 500, 503, 504)
        table = [
            Route("GET", "/v2/health/live", self._live, "Liveness", open=True),
            Route(
                "GET", "/v2/health/ready", self._ready,
                "Readiness: every model loaded and warm, and not draining",
                open=True, errors=(503,),
            ),
            Route("GET", "/v2", self._server_metadata, "Server metadata"),
            Route(
                "GET", "/metrics", self._metrics, "Prometheus metrics", open=True,
                media_type="text/plain",
            ),
            Route("GET", "/openapi.json", self._openapi, "This OpenAPI document"),
            Route(
                "GET", "/v2/models/stats", self._stats,
                "Inference statistics of every model (Triton's statistics extension)",
            ),
        ]  # fmt: skip
        for prefix in (
            "/v2/models/{model_name}",
            "/v2/models/{model_name}/versions/{model_version}",
        ):
            table += [
                Route(
                    "POST", f"{prefix}/infer", self._infer,
                    "Run inference (JSON, or Triton's binary tensor extension)",
                    errors=inference_errors, operation=INFER_OPERATION,
                ),
                Route(
                    "GET", prefix, self._model_metadata,
                    "Model metadata: inputs, outputs, platform, versions", errors=(404,),
                ),
                Route("GET", f"{prefix}/ready", self._model_ready, "Model readiness",
                      errors=(404, 503)),
                Route(
                    "GET", f"{prefix}/config", self._model_config,
                    "Model configuration (Triton's model configuration extension)",
                    errors=(404,),
                ),
                Route(
                    "GET", f"{prefix}/stats", self._stats,
                    "Inference statistics (Triton's statistics extension)", errors=(404,),
                ),
            ]  # fmt: skip
        return table

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
        method: str = scope["method"]
        path: str = scope["path"]
        headers: dict[bytes, bytes] = dict(scope["headers"])
        try:
            try:
                route, params = self.router.match(method, path)
            except ServerError:
                # A client without a token learns nothing of the routes, not even a 404.
                if self._tokens:
                    self.authorize(headers)
                raise
            if self._tokens and not route.open:
                self.authorize(headers)
            response = await route.endpoint(Request(method, path, params, headers, receive))
        except ServerError as exc:
            response = error_response(exc)
        except ClientDisconnected:
            return  # nobody is left to answer
        out = [*response.headers, (b"content-length", str(len(response.body)).encode())]
        if self._closing:
            out.append(_CLOSE)
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        await send({"type": "http.response.body", "body": response.body})

    @property
    def needs_token(self) -> bool:
        """Whether requests to routes that are not open need a bearer token."""
        return bool(self._tokens)

    @property
    def closing(self) -> bool:
        """Whether every answer closes its connection (the listener has closed)."""
        return self._closing

    def authorize(self, headers: Mapping[bytes, bytes]) -> None:
        """Unauthorized unless the headers carry one of the server's bearer tokens."""
        value = headers.get(b"authorization", b"")
        scheme, _, token = value.partition(b" ")
        if scheme.lower() != b"bearer" or not any(
            hmac.compare_digest(token.strip(), known) for known in self._tokens
        ):
            raise Unauthorized()

    # --- endpoints ----------------------------------------------------------------------------

    async def _live(self, request: Request) -> Response:
        return Response(200, b'{"live":true}')

    async def _ready(self, request: Request) -> Response:
        if self.ready:
            return Response(200, b'{"ready":true}')
        raise Unavailable(self._not_ready_reason())

    async def _server_metadata(self, request: Request) -> Response:
        document = {
            "name": SERVER_NAME,
            "version": SERVER_VERSION,
            "extensions": [
                "binary_tensor_data",
                "model_repository_readonly",
                "model_configuration",
                "statistics",
            ],
        }
        return Response(200, orjson.dumps(document))

    async def _metrics(self, request: Request) -> Response:
        for name, model in self.models.items():
            self.metrics.queue_depth.set((name,), model.queue_depth)
            self.metrics.in_flight.set((name,), model.in_flight)
        return Response(200, self.metrics.exposition(), _PROMETHEUS)

    async def _openapi(self, request: Request) -> Response:
        document = openapi_document(self.router.routes, SERVER_VERSION, auth=bool(self._tokens))
        return Response(200, orjson.dumps(document))

    def _not_ready_reason(self) -> str:
        if self.draining:
            return "the server is shutting down"
        if self.load_error is not None:
            return f"a model failed to load: {self.load_error}"
        waiting = [name for name, m in self.models.items() if not m.ready]
        return f"still loading and warming up: {', '.join(waiting)}"

    def _model(self, request: Request) -> ServedModel:
        name = request.params["model_name"]
        model = self.models.get(name)
        if model is None:
            known = ", ".join(self.models)
            raise NotFound(f"no model {name!r}; this server serves: {known}")
        version = request.params.get("model_version")
        if version is not None and version != model.version:
            raise NotFound(
                f"model {name!r} has no version {version!r}; it serves version {model.version!r}"
            )
        return model

    async def _model_metadata(self, request: Request) -> Response:
        return Response(200, orjson.dumps(self._model(request).metadata()))

    async def _model_ready(self, request: Request) -> Response:
        model = self._model(request)
        if model.ready and not self.draining:
            return Response(200, orjson.dumps({"name": model.name, "ready": True}))
        raise Unavailable(self._not_ready_reason())

    async def _model_config(self, request: Request) -> Response:
        return Response(200, orjson.dumps(self._model(request).model_config()))

    async def _stats(self, request: Request) -> Response:
        if "model_name" in request.params:
            chosen = [self._model(request)]
        else:
            chosen = list(self.models.values())
        document = {"model_stats": [model.stats.document() for model in chosen]}
        return Response(200, orjson.dumps(document))

    async def _infer(self, request: Request) -> Response:
        model = self._model(request)
        started = time.perf_counter_ns()
        header_length = int_header(request.headers, b"inference-header-content-length")
        protocol = "json" if header_length is None else "binary"
        code: int | None = 500
        model.in_flight += 1
        model.arriving(1)
        arriving = True
        try:
            body = await self._read_body(request)
            decoded = parse_infer_request(body, header_length)
            model.arriving(-1)
            arriving = False
            outputs = await model.infer(decoded)
            encoded = encode_infer_response(model.name, model.version, decoded, outputs)
            code = 200
        except ClientDisconnected:
            code = None
            raise
        except ServerError as exc:
            code = exc.status
            raise
        except Exception as exc:  # a handler's pre- or postprocess may raise anything
            log.exception("model %r failed on a request", model.name)
            raise ModelError(model.name, exc) from exc
        finally:
            if arriving:
                model.arriving(-1)
            model.in_flight -= 1
            self.record(model, code, protocol, started)
        return infer_response(encoded)

    def record(self, model: ServedModel, code: int | None, protocol: str, started: int) -> None:
        """Count one infer request's answer (None: its client left) in /metrics and statistics."""
        if code is None:
            self.metrics.disconnects.inc((model.name,))
            return
        elapsed = time.perf_counter_ns() - started
        self.metrics.requests.inc((model.name, str(code), protocol))
        self.metrics.latency.observe((model.name,), elapsed / 1e9)
        model.stats.request(code == 200, elapsed)

    async def _read_body(self, request: Request) -> bytearray:
        limit = self.config.max_request_bytes
        declared = int_header(request.headers, b"content-length")
        if declared is not None and declared > limit:
            raise PayloadTooLarge(declared, limit)
        # A bytearray is writable, so binary tensors can be viewed by torch without a copy.
        body = bytearray()
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            body += message.get("body", b"")
            if len(body) > limit:
                raise PayloadTooLarge(len(body), limit)
            if not message.get("more_body", False):
                return body


def int_header(headers: Mapping[bytes, bytes], name: bytes) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"header {name.decode()} must be an integer, not {value!r}") from None


def error_response(exc: ServerError) -> Response:
    """The answer to a ServerError: its status, `{"error": message}` and its own headers."""
    return Response(exc.status, orjson.dumps({"error": exc.message}), (*JSON, *exc.headers))


def infer_response(encoded: EncodedResponse) -> Response:
    """The answer to an infer request: JSON, or binary tensors after a JSON header."""
    if encoded.header_length is None:
        return Response(200, encoded.body)
    length = str(encoded.header_length).encode()
    return Response(200, encoded.body, (_OCTETS, (b"inference-header-content-length", length)))
