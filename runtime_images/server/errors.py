"""Errors the server answers with. Each carries its HTTP status and builds its own message."""

from __future__ import annotations

import re

_NAMED = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Warning): ")


def describe(exc: BaseException) -> str:
    """An exception in one line: `Type: message`.

    TorchScript's errors span many lines of interpreter traceback and end with the line that
    matters (`RuntimeError: mat1 and mat2 shapes cannot be multiplied (1x5 and 4x3)`).
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last if _NAMED.match(last) else f"{type(exc).__name__}: {last}".rstrip(": ")


class ServerError(Exception):
    """An error with an HTTP status, answered as `{"error": message}`."""

    status = 500
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class BadRequest(ServerError):
    """The request does not match the protocol or the model's inputs."""

    status = 400


class Unauthorized(ServerError):
    """A bearer token is required and the request has none, or a wrong one."""

    status = 401
    headers = ((b"www-authenticate", b"Bearer"),)

    def __init__(self) -> None:
        super().__init__("a valid bearer token is required: send `Authorization: Bearer <token>`")


class NotFound(ServerError):
    """No such model, version or route."""

    status = 404


class MethodNotAllowed(ServerError):
    """The route exists, but not for this HTTP method; `Allow` lists the methods it takes."""

    status = 405

    def __init__(self, method: str, path: str, allowed: tuple[str, ...]) -> None:
        listed = ", ".join(allowed)
        super().__init__(f"{method} is not allowed on {path}; use {listed}")
        self.headers = ((b"allow", listed.encode()),)


class PayloadTooLarge(ServerError):
    """The request body is larger than the server accepts."""

    status = 413

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"request body of {size} bytes is over the limit of {limit} bytes; send fewer "
            "samples per request, or raise --max-request-bytes"
        )


class Overloaded(ServerError):
    """The queue is full: the client should retry after a short wait."""

    status = 429
    headers = ((b"retry-after", b"1"),)

    def __init__(self, model: str, depth: int) -> None:
        super().__init__(
            f"model {model!r} has {depth} requests queued, its limit; retry after a second"
        )


class Unavailable(ServerError):
    """The server is starting, or draining before it exits."""

    status = 503
    headers = ((b"retry-after", b"1"),)


class Timeout(ServerError):
    """The request did not finish within its time limit."""

    status = 504

    def __init__(self, seconds: float) -> None:
        super().__init__(f"inference did not finish within {seconds:g} s; the request was dropped")


class ModelError(ServerError):
    """The model raised while running; the server keeps serving."""

    status = 500

    def __init__(self, model: str, exc: BaseException) -> None:
        super().__init__(f"model {model!r} failed: {describe(exc)}")


class ClientDisconnected(Exception):
    """The client closed its connection before its request was read: nobody to answer."""

    def __init__(self) -> None:
        super().__init__("the client closed the connection before sending its whole request")


class LoadError(Exception):
    """The model cannot be loaded; the server does not start."""
