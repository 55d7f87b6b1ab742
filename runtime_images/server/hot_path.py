"""The HTTP hot path: V2 infer requests handed from the HTTP parser straight to the batcher.

uvicorn's httptools protocol turns every request into an ASGI scope, a task that runs the app's
coroutine, and messages through `receive` and `send`; the app then waits on a future and a timer
per request. On a small model that machinery costs more of the core than the model does.

`HotPathProtocol` is uvicorn's protocol with one change. A `POST /v2/models/NAME/infer` (or
`.../versions/V/infer`) for a model this server serves, with a Content-Length within the limit,
is read by the protocol itself; when its body is complete it is decoded, checked and queued for
the model's next batch right there, in the parser's callback. The batcher answers it through
`HotRequest`, which encodes the result and writes the response to the connection: no scope, task,
coroutine or future per request.

Every other request, and any infer request the hot path does not take (Expect: 100-continue,
HTTP/1.0, a chunked body, a query string or escaped path, a request pipelined behind one still
being answered, an unknown model or version, a body over the limit), goes through the ASGI app
unchanged. The hot path answers with the same status, headers and body as the app, counts the
same metrics and statistics, and counts its requests in flight, so the drain waits for them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from .app import ServingApp, error_response, infer_response, int_header
from .errors import ModelError, ServerError
from .protocol import InferRequest, encode_infer_response, parse_infer_request
from .routing import Response
from .served_model import ServedModel

log = logging.getLogger("fermion.server")

_PREFIX = b"/v2/models/"
_SUFFIX = b"/infer"
_VERSIONS = b"/versions/"


class _NoEvent:
    """Stands in for a request cycle's message event: no reader waits on a hot request."""

    def set(self) -> None:
        pass


_NO_EVENT = _NoEvent()


class HotRequest:
    """One infer request on the hot path, from the end of its headers to its answer.

    It stands in for uvicorn's request cycle on its connection (`response_complete`,
    `keep_alive`, `disconnected`), so pipelining, the drain and `shutdown()` treat it as any
    request in flight; and for the future its batch answers (`done`, `set_result`,
    `set_exception`), so the batcher treats it as any queued request.
    """

    __slots__ = (
        "_done",
        "body",
        "conn",
        "disconnected",
        "header_length",
        "headers",
        "keep_alive",
        "message_event",
        "model",
        "request",
        "response_complete",
        "rows",
        "started",
        "timer",
        "wire",
    )  # fmt: skip

    def __init__(
        self,
        conn: HotPathProtocol,
        model: ServedModel,
        headers: dict[bytes, bytes],
        keep_alive: bool,
    ) -> None:
        self.conn = conn
        self.model = model
        self.headers = headers
        self.keep_alive = keep_alive
        self.response_complete = False
        self.disconnected = False
        self.message_event = _NO_EVENT
        self.body = bytearray()  # writable, so binary tensors are viewed without a copy
        self.header_length: int | None = None
        self.request: InferRequest | None = None
        self.wire = "json"
        self.started = 0
        self.rows = 0
        self.timer: asyncio.TimerHandle | None = None
        self._done = False

    def begin(self) -> None:
        """The headers are complete: the checks the app makes before it reads the body.

        A request that fails them is answered at once and its body is discarded, as in the
        app; one that passes counts as in flight, and as arriving for the batcher.
        """
        app = self.conn.serving
        try:
            if app.needs_token:
                app.authorize(self.headers)
            self.header_length = int_header(self.headers, b"inference-header-content-length")
        except ServerError as exc:  # answered before the request counts, as in the app
            self._done = True
            self.conn.respond(self, error_response(exc))
            return
        if self.header_length is not None:
            self.wire = "binary"
        self.started = time.perf_counter_ns()
        self.model.in_flight += 1
        self.model.arriving(1)

    def start(self) -> None:
        """The body is complete: decode, check and queue for the next batch."""
        model = self.model
        model.arriving(-1)
        try:
            self.request = parse_infer_request(self.body, self.header_length)
            self.rows, self.timer = model.enqueue(self.request, self)
        except ServerError as exc:
            self.set_exception(exc)
        except Exception as exc:  # a handler's preprocess may raise anything
            log.exception("model %r failed on a request", model.name)
            self.set_exception(ModelError(model.name, exc))

    def abandon(self) -> None:
        """The client left before sending the whole body: counted apart, as in the app."""
        self._done = True
        self.response_complete = True
        self.model.arriving(-1)
        self.model.in_flight -= 1
        self.conn.serving.record(self.model, None, self.wire, self.started)

    # --- the batcher's side: the Completion protocol ------------------------------------------

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any) -> None:
        """The batch ran: postprocess, encode and answer."""
        self._settle()
        model = self.model
        assert self.request is not None  # set before the request was queued
        try:
            outputs = model.finish(result, self.rows)
            encoded = encode_infer_response(model.name, model.version, self.request, outputs)
        except ServerError as exc:
            self._answer(exc.status, error_response(exc))
        except Exception as exc:  # a handler's postprocess may raise anything
            log.exception("model %r failed on a request", model.name)
            self._answer(500, error_response(ModelError(model.name, exc)))
        else:
            self._answer(200, infer_response(encoded))

    def set_exception(self, exception: BaseException) -> None:
        """The request failed: its batch raised, it timed out, or it was refused."""
        self._settle()
        if not isinstance(exception, ServerError):
            exception = ModelError(self.model.name, exception)
        self._answer(exception.status, error_response(exception))

    def _settle(self) -> None:
        self._done = True
        if self.timer is not None:
            self.timer.cancel()

    def _answer(self, code: int, response: Response) -> None:
        self.model.in_flight -= 1
        self.conn.serving.record(self.model, code, self.wire, self.started)
        self.conn.respond(self, response)


class HotPathProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, taking the infer requests it can for the hot path.

    Made per app by `hot_path_protocol`, which sets `serving` and `hot_models`.
    """

    serving: ServingApp
    hot_models: dict[bytes, tuple[ServedModel, bytes]]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._hot: HotRequest | None = None
        self._limit = self.serving.config.max_request_bytes

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._hot = None

    def on_headers_complete(self) -> None:
        hot = self._take()
        if hot is None:
            super().on_headers_complete()
            return
        self._hot = hot
        self.cycle = hot  # type: ignore[assignment]
        hot.begin()

    def on_body(self, body: bytes) -> None:
        hot = self._hot
        if hot is None:
            super().on_body(body)
        elif not hot.response_complete:
            hot.body += body

    def on_message_complete(self) -> None:
        hot = self._hot
        if hot is None:
            super().on_message_complete()
            return
        self._hot = None
        if not hot.response_complete:
            hot.start()

    def connection_lost(self, exc: Exception | None) -> None:
        hot = self._hot
        if hot is not None and not hot.response_complete:
            self._hot = None
            hot.abandon()
        super().connection_lost(exc)

    def _take(self) -> HotRequest | None:
        """A HotRequest for this request when the hot path can answer it; None sends it to ASGI."""
        cycle = self.cycle
        if self.expect_100_continue or (cycle is not None and not cycle.response_complete):
            return None
        parser = self.parser
        if (
            parser.get_method() != b"POST"
            or parser.get_http_version() != "1.1"
            or parser.should_upgrade()
        ):
            return None
        model = self._route(self.url)
        if model is None:
            return None
        headers = dict(self.headers)  # the last of a repeated header wins, as in the app
        length = headers.get(b"content-length")
        if length is None or b"transfer-encoding" in headers:
            return None
        try:
            if int(length) > self._limit:
                return None  # the app answers 413, after its other checks
        except ValueError:
            return None
        return HotRequest(self, model, headers, parser.should_keep_alive())

    def _route(self, url: bytes) -> ServedModel | None:
        if not url.startswith(_PREFIX) or not url.endswith(_SUFFIX):
            return None
        if b"%" in url or b"?" in url or b"#" in url:
            return None  # escapes, queries, fragments: the router reads those paths
        name, versioned, version = url[len(_PREFIX) : -len(_SUFFIX)].partition(_VERSIONS)
        found = self.hot_models.get(name)
        if found is None:
            return None
        model, own_version = found
        if versioned and (version != own_version or b"/" in version):
            return None  # the app answers 404, or no route
        return model

    def respond(self, hot: HotRequest, response: Response) -> None:
        """Write an answer as uvicorn would for the app's response, and finish the request."""
        hot.response_complete = True
        transport = self.transport
        if hot.disconnected or transport.is_closing():
            return  # nobody is left to answer
        body = response.body
        parts = [STATUS_LINE[response.status]]
        for name, value in (*self.server_state.default_headers, *response.headers):
            parts += (name, b": ", value, b"\r\n")
        parts += (b"content-length: ", str(len(body)).encode(), b"\r\n")
        keep_alive = hot.keep_alive and not self.serving.closing
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        parts += (b"\r\n", body)
        transport.write(b"".join(parts))
        if not keep_alive:
            transport.close()
        self.on_response_complete()


def hot_path_protocol(app: ServingApp) -> type[HotPathProtocol]:
    """The protocol class for uvicorn's `Config(http=...)`, with the hot path into `app`."""
    # Only names the router reads as one plain path segment: others go the app's way.
    models = {
        name.encode(): (model, model.version.encode())
        for name, model in app.models.items()
        if name.isascii() and not any(c in name for c in "/%?#")
    }

    class BoundHotPathProtocol(HotPathProtocol):
        serving = app
        hot_models = models

    return BoundHotPathProtocol
