"""Big JSON headers are read with simdjson, leaving `data` arrays for C to turn into floats;
every request must decode, or be refused, exactly as orjson alone decodes or refuses it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fermion.runtime_images.server import protocol
from fermion.runtime_images.server.errors import BadRequest
from fermion.runtime_images.server.tensors import from_json

pytest.importorskip("simdjson")


def _body(data: Any, datatype: str = "FP32", shape: Any = (1, 4)) -> bytes:
    spec = {"name": "input__0", "datatype": datatype, "shape": list(shape), "data": data}
    return json.dumps({"inputs": [spec]}).encode()


DATA: tuple[list[Any], ...] = (
    [1, 2, 3, 4], [1.5, 2, 3e38, 4e39], [[1, 2, 3, 4]], [1, 2, 3, [4]], [1, [2], 3, 4],
    [1, True, 3, 4], [1, None, 3, 4], [1, "x", 3, 4], [], [1, 2, 3], [[1, 2], [3]],
    [1, 2, 3, 18446744073709551615], [1e-400, 2, 3, 4], [0.1, -0.0, 1e-45, 3.4028235e38],
)  # fmt: skip
DATATYPES = ("FP32", "FP64", "FP16", "INT32", "BOOL", "BYTES")
RAW = (
    b'{"inputs":[{"name":"input__0","datatype":"FP32","shape":[1,4],"data":[1,2,3,1e400]}]}',
    b'{"inputs":[{"name":"input__0","datatype":"FP32","shape":[1,4],"data":[1,2,3,NaN]}]}',
    b'{"inputs":[{"name":"input__0","datatype":"FP32","shape":[1,4],"data":[1,2,3,4],'
    b'"data":[5,6,7,8]}]}',
    b'{"inputs":[{"name":"in[put","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}],'
    b'"id":"a[b"}',
    b'{"inputs":[{"name":"in\\u005bput","datatype":"FP32","shape":[1,4],"data":[1,2,3,[4]]}]}',
    b'{"inputs":{"a":[1]}}', b"[1,2]", b'{"inputs":[[1,2]]}', b'{"inputs":[]}', b"{not json",
    b'{"inputs":[{"name":"input__0","datatype":"FP32","shape":[1,4],"data":[1,2,3,4],'
    b'"parameters":{"x":[1,[2]]}}],"outputs":[{"name":"o","parameters":{"binary_data":true}}],'
    b'"parameters":{"binary_data_output":true},"id":7}',
    '{"inputs":[{"name":"é","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}'.encode(),
    b"\xff\xfe",
    b'{"inputs":[{"name":"input__0","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]} [',
    b'{"inputs":[{"name":"input__0","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}   ',
)  # fmt: skip
CASES = [_body(d, t) for d in DATA for t in DATATYPES] + list(RAW)


def _decode(body: bytes, lazy: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(protocol, "LAZY_FROM_BYTES", 0 if lazy else 1 << 40)
    try:
        request = protocol.parse_infer_request(bytearray(body), None)
    except BadRequest as exc:
        return ("refused", exc.message)
    inputs = [
        (t.name, t.datatype, t.shape, t.data.dtype.str, t.data.tobytes()) for t in request.inputs
    ]
    return ("decoded", inputs, request.outputs, request.id, request.binary_output)


@pytest.mark.parametrize("body", CASES, ids=range(len(CASES)))
def test_simdjson_decodes_as_orjson(body: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _decode(body, True, monkeypatch) == _decode(body, False, monkeypatch)


def test_a_big_float_array_is_read_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lazy route is taken for a plain body (not a silent fall back to orjson)."""
    seen: list[Any] = []
    original = from_json

    def spy(data: Any, *args: Any) -> Any:
        seen.append(type(data).__name__)
        return original(data, *args)

    monkeypatch.setattr(protocol, "from_json", spy)
    body = _body([0.25] * 4096, shape=(1, 4096))
    assert len(body) >= protocol.LAZY_FROM_BYTES
    request = protocol.parse_infer_request(bytearray(body), None)
    assert seen == ["Array"]
    assert request.inputs[0].data.dtype.str == "<f4" and float(request.inputs[0].data.sum()) == 1024
