"""The server's routes as one table of (method, path pattern, endpoint), as in Starlette's Router.

Everything that depends on the route set is derived from the table: matching, 404 and 405 (with
its `Allow` header), which paths answer without a bearer token, and the OpenAPI document.

A path is exact (`/v2/health/ready`) or a pattern whose `{name}` parts each match one path
segment (`/v2/models/{model_name}/infer`). Matching looks the path up in a dict first, then in a
bounded cache of pattern matches, and only then tries the patterns, so the hot path costs a dict
lookup or two.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import MethodNotAllowed, NotFound

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Headers = tuple[tuple[bytes, bytes], ...]

JSON: Headers = ((b"content-type", b"application/json"),)
_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)}")
_CACHE_LIMIT = 1024  # pattern matches remembered; the paths come from clients


@dataclass(frozen=True, slots=True)
class Request:
    """What an endpoint gets: the method, the path and its parameters, headers and the body."""

    method: str
    path: str
    params: Mapping[str, str]
    headers: Mapping[bytes, bytes]
    receive: Receive


@dataclass(frozen=True, slots=True)
class Response:
    """What an endpoint answers with; errors are raised as ServerError instead."""

    status: int
    body: bytes
    headers: Headers = JSON


Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    """One method on one path, and what the OpenAPI document says of it.

    `open` routes answer without a bearer token (probes and metrics). `errors` are the error
    statuses the route may answer with; `media_type` is its answer's content type; `operation`
    holds any further OpenAPI operation fields (a request body, header parameters).
    """

    method: str
    path: str
    endpoint: Endpoint
    summary: str
    open: bool = False
    errors: tuple[int, ...] = ()
    media_type: str = "application/json"
    operation: Mapping[str, Any] | None = None

    @property
    def params(self) -> tuple[str, ...]:
        """The names of the path's parameters, in order."""
        return tuple(_PARAM.findall(self.path))


def _compile(path: str) -> re.Pattern[str]:
    parts = _PARAM.split(path)
    # split alternates literal text and parameter names: literal, name, literal, ...
    regex = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
    )
    return re.compile(regex + r"\Z")


def allowed(methods: Mapping[str, Route]) -> tuple[str, ...]:
    """The methods a path answers, HEAD included wherever GET is."""
    names = set(methods)
    if "GET" in names:
        names.add("HEAD")
    return tuple(sorted(names))


class Router:
    """Matches a request's method and path to a route of the table."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)
        self._exact: dict[str, dict[str, Route]] = {}
        patterns: dict[str, tuple[re.Pattern[str], dict[str, Route]]] = {}
        for route in self.routes:
            if "{" in route.path:
                methods = patterns.setdefault(route.path, (_compile(route.path), {}))[1]
            else:
                methods = self._exact.setdefault(route.path, {})
            if route.method in methods:
                raise ValueError(f"two routes for {route.method} {route.path}")
            methods[route.method] = route
        self._patterns = tuple(patterns.values())
        self._cache: dict[str, tuple[dict[str, Route], Mapping[str, str]]] = {}

    def match(self, method: str, path: str) -> tuple[Route, Mapping[str, str]]:
        """The route for a request and its path parameters; NotFound or MethodNotAllowed."""
        methods = self._exact.get(path)
        params: Mapping[str, str] = {}
        if methods is None:
            cached = self._cache.get(path)
            if cached is None:
                cached = self._match_pattern(method, path)
            methods, params = cached
        route = methods.get(method)
        if route is None:
            route = methods.get("GET") if method == "HEAD" else None
            if route is None:
                raise MethodNotAllowed(method, path, allowed(methods))
        return route, params

    def _match_pattern(self, method: str, path: str) -> tuple[dict[str, Route], Mapping[str, str]]:
        for pattern, methods in self._patterns:
            found = pattern.match(path)
            if found is not None:
                result = (methods, found.groupdict())
                if len(self._cache) < _CACHE_LIMIT:
                    self._cache[path] = result
                return result
        raise NotFound(f"no route {method} {path}; see /openapi.json")
