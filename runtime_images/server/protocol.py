"""The Open Inference Protocol's infer request and response, in JSON or with binary tensors.

A request with the header `Inference-Header-Content-Length: N` carries N bytes of JSON followed by
the raw data of each input whose parameters give a `binary_data_size` (Triton's extension).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import BadRequest
from .tensors import datatype, from_binary, from_json, to_binary, to_json_data

try:
    import simdjson
except ImportError:  # the server works without it, reading all JSON with orjson
    simdjson = None  # type: ignore[assignment]

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
# JSON headers from this size on are read with simdjson, which leaves each input's `data` array
# unread until `from_json` turns it into floats in C: orjson builds a Python float per element
# first. Below it, orjson alone is as fast.
LAZY_FROM_BYTES = 8192


@dataclass(frozen=True, slots=True)
class InputTensor:
    """One decoded input tensor."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Any  # numpy array, or a torch tensor for BF16


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output the client asked for by name, and whether it wants it as binary data."""

    name: str
    binary: bool | None


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A decoded infer request."""

    id: str | None
    inputs: tuple[InputTensor, ...]
    outputs: tuple[RequestedOutput, ...]
    binary_output: bool
    binary_input: bool

    @property
    def protocol(self) -> str:
        return "binary" if self.binary_input else "json"


@dataclass(frozen=True, slots=True)
class EncodedResponse:
    """A response body, and the JSON header's length when binary data follows it."""

    body: bytes
    header_length: int | None


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be a JSON object")
    return value


def _shape(value: object, where: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise BadRequest(f"{where}: `shape` must be a list of non-negative integers")
    for d in value:  # a loop, not all(...): this runs for every input of every request
        if type(d) is not int or d < 0:  # bool is a subclass of int, and is refused
            raise BadRequest(f"{where}: `shape` must be a list of non-negative integers")
    return tuple(value)


def _lazy_header(raw: memoryview) -> dict[str, Any] | None:
    """The JSON header with each input's `data` array left unread (a LazyArray), or None where
    orjson must read it instead: invalid JSON (orjson's message is the one clients get), a
    repeated key, an escape, or nesting inside a `data` array.

    Everything else is read into Python objects exactly as orjson reads it. The check for
    nesting counts brackets: with no escapes in the text, every `[` is either a literal in a
    string or the start of an array, and all of them must be accounted for outside the lazy
    arrays, plus one for each lazy array itself.
    """
    text = bytes(raw)
    if b"\\" in text:
        return None
    try:
        document = simdjson.Parser().parse(text)
    except (ValueError, RuntimeError):  # not JSON, or numbers out of range: orjson says why
        return None
    if not isinstance(document, simdjson.Object):
        return None
    header = _lazy_object(document, lazy_data=False)
    if header is None:
        return None
    raw_inputs = header.get("inputs")
    if isinstance(raw_inputs, simdjson.Array):
        inputs: list[Any] = []
        for item in raw_inputs:
            converted: Any = item
            if isinstance(item, simdjson.Object):
                converted = _lazy_object(item, lazy_data=True)
                if converted is None:
                    return None
            elif isinstance(item, simdjson.Array):
                converted = item.as_list()
            inputs.append(converted)
        header["inputs"] = inputs
    if _brackets(header) != text.count(b"["):
        return None
    return header


def _lazy_object(document: Any, lazy_data: bool) -> dict[str, Any] | None:
    """An object's members; `data` arrays left lazy where `lazy_data`, `inputs` left for the
    caller; None when a key repeats (orjson keeps the last, simdjson's lookup the first)."""
    keys = list(document.keys())
    if len(set(keys)) != len(keys):
        return None
    plain: dict[str, Any] = {}
    for key in keys:
        value = document[key]
        if isinstance(value, simdjson.Array):
            if not (key == "inputs" and not lazy_data) and not (key == "data" and lazy_data):
                value = value.as_list()
        elif isinstance(value, simdjson.Object):
            value = value.as_dict()
        plain[key] = value
    return plain


def _brackets(value: Any) -> int:
    """The `[` a value accounts for in its JSON text: one per array, and those in strings."""
    if isinstance(value, str):
        return value.count("[")
    if isinstance(value, list):
        return 1 + sum(_brackets(item) for item in value)
    if isinstance(value, dict):
        return sum(_brackets(key) + _brackets(item) for key, item in value.items())
    if isinstance(value, simdjson.Array):  # a `data` array left lazy
        return 1
    return 0


def parse_infer_request(body: bytes | bytearray, header_length: int | None) -> InferRequest:
    """Decode an infer request body; 400 with the reason for anything malformed."""
    view = memoryview(body)
    if header_length is None:
        header_bytes, binary = view, view[:0]
    else:
        if not 0 < header_length <= len(body):
            raise BadRequest(
                f"Inference-Header-Content-Length is {header_length}, but the body has "
                f"{len(body)} bytes"
            )
        header_bytes, binary = view[:header_length], view[header_length:]
    header = None
    if simdjson is not None and len(header_bytes) >= LAZY_FROM_BYTES:
        header = _lazy_header(header_bytes)
    try:
        if header is None:
            header = orjson.loads(header_bytes)
    except orjson.JSONDecodeError as exc:
        hint = (
            "; a binary request needs the Inference-Header-Content-Length header"
            if header_length is None
            else ""
        )
        raise BadRequest(f"the request is not valid JSON ({exc}){hint}") from None
    header = _object(header, "the request")
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequest("the request needs a non-empty `inputs` list")
    parameters = header.get("parameters")
    if parameters is not None:
        parameters = _object(parameters, "`parameters`")
    inputs = []
    offset = 0
    for i, raw in enumerate(raw_inputs):
        spec = _object(raw, f"inputs[{i}]")
        name = spec.get("name")
        if not isinstance(name, str):
            raise BadRequest(f"inputs[{i}] needs a `name` string")
        where = f"input {name!r}"
        dtype = datatype(spec.get("datatype"), where)
        shape = _shape(spec.get("shape"), where)
        size = None
        input_parameters = spec.get("parameters")
        if input_parameters is not None:
            size = _object(input_parameters, f"{where} parameters").get("binary_data_size")
        if size is not None:
            if header_length is None:
                raise BadRequest(
                    f"{where} has binary_data_size but the request has no "
                    "Inference-Header-Content-Length header"
                )
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise BadRequest(f"{where}: binary_data_size must be a non-negative integer")
            if offset + size > len(binary):
                raise BadRequest(
                    f"{where}: binary_data_size {size} runs past the end of the body "
                    f"({len(binary) - offset} bytes left)"
                )
            data = from_binary(binary[offset : offset + size], dtype, shape, where)
            offset += size
        elif "data" in spec:
            data = from_json(spec["data"], dtype, shape, where)
        else:
            raise BadRequest(f"{where} has neither `data` nor a binary_data_size parameter")
        inputs.append(InputTensor(name, dtype.name, shape, data))
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes of binary data follow the last input")
    outputs = []
    for i, raw in enumerate(header.get("outputs") or []):
        spec = _object(raw, f"outputs[{i}]")
        name = spec.get("name")
        if not isinstance(name, str):
            raise BadRequest(f"outputs[{i}] needs a `name` string")
        flag = _object(spec.get("parameters", {}), f"output {name!r} parameters").get("binary_data")
        outputs.append(RequestedOutput(name, None if flag is None else bool(flag)))
    request_id = header.get("id")
    return InferRequest(
        id=None if request_id is None else str(request_id),
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        binary_output=parameters is not None and bool(parameters.get("binary_data_output", False)),
        binary_input=header_length is not None,
    )


def encode_infer_response(
    model: str,
    version: str,
    request: InferRequest,
    outputs: dict[str, Any],
) -> EncodedResponse:
    """Encode named output tensors as the client asked: JSON data, or binary after the header."""
    # Without a list of outputs, every output goes back in the request's default form.
    wanted: Iterable[tuple[str, bool | None]] = (
        ((r.name, r.binary) for r in request.outputs)
        if request.outputs
        else ((name, None) for name in outputs)
    )
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, requested_binary in wanted:
        if name not in outputs:
            known = ", ".join(outputs)
            raise BadRequest(f"model {model!r} has no output {name!r}; outputs: {known}")
        value = outputs[name]
        binary = request.binary_output if requested_binary is None else requested_binary
        if binary:
            dtype, shape, raw = to_binary(value)
            entries.append(
                {
                    "name": name,
                    "datatype": dtype,
                    "shape": shape,
                    "parameters": {"binary_data_size": len(raw)},
                }
            )
            blobs.append(raw)
        else:
            dtype, shape, data = to_json_data(value)
            entries.append({"name": name, "datatype": dtype, "shape": shape, "data": data})
    response: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": entries}
    if request.id is not None:
        response["id"] = request.id
    header = orjson.dumps(response, option=_JSON_OPTIONS)
    if not blobs:
        return EncodedResponse(header, None)
    return EncodedResponse(header + b"".join(blobs), len(header))
