"""The OpenAPI document of the server's REST API, derived from its route table."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .routing import Route

_TENSOR_META = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
}
_INPUT = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        **_TENSOR_META["properties"],  # type: ignore[dict-item]
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}
_ERROR = {
    "description": "An error, with a message that names the problem.",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
        }
    },
}

# The infer route's request: JSON, or a JSON header followed by binary tensors.
INFER_OPERATION: dict[str, Any] = {
    "parameters": [
        {
            "name": "Inference-Header-Content-Length",
            "in": "header",
            "required": False,
            "schema": {"type": "integer", "minimum": 1},
            "description": "Length of the JSON header when binary tensor data follows it.",
        },
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "parameters": {"type": "object"},
                        "inputs": {"type": "array", "items": _INPUT, "minItems": 1},
                        "outputs": {"type": "array", "items": {"type": "object"}},
                    },
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
}


def _operation(route: Route, auth: bool) -> dict[str, Any]:
    extra = dict(route.operation or {})
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in route.params
    ]
    parameters += extra.pop("parameters", [])
    schema = {"type": "object"} if route.media_type == "application/json" else {"type": "string"}
    responses: dict[str, Any] = {
        "200": {"description": route.summary, "content": {route.media_type: {"schema": schema}}}
    }
    errors = set(route.errors) | ({401} if auth and not route.open else set())
    responses.update({str(code): _ERROR for code in sorted(errors)})
    operation: dict[str, Any] = {"summary": route.summary}
    if parameters:
        operation["parameters"] = parameters
    operation.update(extra)
    operation["responses"] = responses
    if auth and route.open:
        operation["security"] = []  # probes and metrics need no token
    return operation


def openapi_document(routes: Iterable[Route], version: str, auth: bool) -> dict[str, Any]:
    """The whole document: one operation per route; `auth` when bearer tokens are required."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, auth)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "fermion inference server", "version": version},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    if auth:
        document["security"] = [{"bearer": []}]
    return document
