"""The OpenAPI document of the server's REST API (the V2 protocol's REST form)."""

from __future__ import annotations

from typing import Any

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


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _model_paths(prefix: str, name_params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        prefix: {
            "get": {
                "summary": "Model metadata: inputs, outputs, platform, versions",
                "parameters": name_params,
                "responses": {"200": _json({"type": "object"}, "Model metadata"), "404": _ERROR},
            }
        },
        f"{prefix}/ready": {
            "get": {
                "summary": "Model readiness",
                "parameters": name_params,
                "responses": {
                    "200": _json({"type": "object"}, "Ready"),
                    "404": _ERROR,
                    "503": _ERROR,
                },
            }
        },
        f"{prefix}/infer": {
            "post": {
                "summary": "Run inference (JSON, or Triton's binary tensor extension)",
                "parameters": [
                    *name_params,
                    {
                        "name": "Inference-Header-Content-Length",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1},
                        "description": "Length of the JSON header when binary tensor data "
                        "follows it.",
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
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        },
                    },
                },
                "responses": {
                    "200": _json({"type": "object"}, "The outputs"),
                    **{
                        code: _ERROR
                        for code in ("400", "401", "404", "413", "429", "500", "503", "504")
                    },
                },
            }
        },
    }


def openapi_document(version: str) -> dict[str, Any]:
    """The whole document."""
    name = {"name": "model_name", "in": "path", "required": True, "schema": {"type": "string"}}
    ver = {"name": "model_version", "in": "path", "required": True, "schema": {"type": "string"}}
    paths: dict[str, Any] = {
        "/v2/health/live": {
            "get": {"summary": "Liveness", "responses": {"200": _json({"type": "object"}, "Live")}}
        },
        "/v2/health/ready": {
            "get": {
                "summary": "Readiness: every model loaded and warm, and not draining",
                "responses": {"200": _json({"type": "object"}, "Ready"), "503": _ERROR},
            }
        },
        "/v2": {
            "get": {
                "summary": "Server metadata",
                "responses": {"200": _json({"type": "object"}, "Server metadata")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Metrics in the text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        **_model_paths("/v2/models/{model_name}", [name]),
        **_model_paths("/v2/models/{model_name}/versions/{model_version}", [name, ver]),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "fermion inference server", "version": version},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
