"""The hot path below ASGI answers every infer request exactly as the ASGI app does.

Two servers serve the same model with the same options, one with the hot path (the default) and
one with FERMION_HOT_PATH=0; a corpus of valid and invalid requests goes to both over raw
sockets, and each answer must match byte for byte (status line, headers in order, body).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn

from fermion.runtime_images.server.app import ServingApp
from fermion.runtime_images.server.config import ModelConfig, ServerConfig, TensorSpec
from fermion.runtime_images.server.hot_path import HotPathProtocol, hot_path_protocol
from fermion.runtime_images.server.serve import HOT_PATH_ENV, build_server, hot_path_enabled

from .conftest import Server, start_server, v2_input

TOKEN = "s3cret"
AUTH = f"Authorization: Bearer {TOKEN}\r\n"


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def _post(
    path: str,
    body: bytes,
    headers: str = AUTH,
    version: str = "HTTP/1.1",
    length: bool = True,
) -> bytes:
    head = f"POST {path} {version}\r\nHost: test\r\n{headers}"
    if length:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def _binary(values: list[float], shape: list[int], extra: dict[str, Any] | None = None) -> bytes:
    raw = np.asarray(values, dtype=np.float32).tobytes()
    spec: dict[str, Any] = {"name": "input__0", "datatype": "FP32", "shape": shape}
    spec["parameters"] = {"binary_data_size": len(raw)}
    header = _json({"inputs": [spec], **(extra or {})})
    head = (
        f"{AUTH}Inference-Header-Content-Length: {len(header)}\r\n"
        "Content-Type: application/octet-stream\r\n"
    )
    return _post("/v2/models/affine/infer", header + raw, head)


def _infer(inputs: list[Any], **extra: Any) -> bytes:
    return _post("/v2/models/affine/infer", _json({"inputs": inputs, **extra}))


GOOD = v2_input("input__0", [1, 2, 3, 4], [1, 4])

CORPUS: dict[str, bytes] = {
    "one sample": _infer([GOOD]),
    "three samples": _infer([v2_input("input__0", [0.5] * 12, [3, 4])]),
    "nested data": _infer([v2_input("input__0", [[1, 2, 3, 4]], [1, 4])]),
    "id, outputs and binary output": _infer(
        [GOOD], id="req-7", outputs=[{"name": "output__0", "parameters": {"binary_data": True}}]
    ),
    "binary output for all": _infer([GOOD], parameters={"binary_data_output": True}),
    "unknown output": _infer([GOOD], outputs=[{"name": "nope"}]),
    "version route": _post("/v2/models/affine/versions/1/infer", _json({"inputs": [GOOD]})),
    "wrong version": _post("/v2/models/affine/versions/9/infer", _json({"inputs": [GOOD]})),
    "unknown model": _post("/v2/models/nope/infer", _json({"inputs": [GOOD]})),
    "query string": _post("/v2/models/affine/infer?x=1", _json({"inputs": [GOOD]})),
    "escaped path": _post("/v2/models/aff%69ne/infer", _json({"inputs": [GOOD]})),
    "no token": _post("/v2/models/affine/infer", _json({"inputs": [GOOD]}), headers=""),
    "wrong token": _post(
        "/v2/models/affine/infer", _json({"inputs": [GOOD]}), "Authorization: Bearer no\r\n"
    ),
    "wrong scheme": _post(
        "/v2/models/affine/infer", _json({"inputs": [GOOD]}), f"Authorization: Basic {TOKEN}\r\n"
    ),
    "no token, unknown model": _post("/v2/models/nope/infer", b"{}", headers=""),
    "not JSON": _post("/v2/models/affine/infer", b"{not json"),
    "not an object": _post("/v2/models/affine/infer", b"[1, 2]"),
    "empty inputs": _infer([]),
    "inputs not a list": _post("/v2/models/affine/infer", _json({"inputs": {"a": 1}})),
    "bad datatype": _infer([v2_input("input__0", [1, 2, 3, 4], [1, 4], "FP99")]),
    "other datatype": _infer([v2_input("input__0", [1, 2, 3, 4], [1, 4], "INT32")]),
    "bad shape": _infer([v2_input("input__0", [1, 2, 3, 4], [4, 1])]),
    "negative shape": _infer([v2_input("input__0", [1, 2, 3, 4], [-1, 4])]),
    "count mismatch": _infer([v2_input("input__0", [1, 2, 3], [1, 4])]),
    "unknown input": _infer([v2_input("input__9", [1, 2, 3, 4], [1, 4])]),
    "input twice": _infer([GOOD, GOOD]),
    "string in data": _infer([v2_input("input__0", [1, "x", 3, 4], [1, 4])]),
    "null in data": _infer([v2_input("input__0", [1, None, 3, 4], [1, 4])]),
    "bool in data": _infer([v2_input("input__0", [1, True, 3, 4], [1, 4])]),
    "ragged nesting": _infer([v2_input("input__0", [[1, 2], [3]], [1, 4])]),
    "list inside flat data": _infer([v2_input("input__0", [1, 2, 3, [4]], [1, 4])]),
    "huge number": _post(
        "/v2/models/affine/infer",
        b'{"inputs":[{"name":"input__0","datatype":"FP32","shape":[1,4],"data":[1,2,3,1e400]}]}',
    ),
    "NaN literal": _post(
        "/v2/models/affine/infer",
        b'{"inputs":[{"name":"input__0","datatype":"FP32","shape":[1,4],"data":[1,2,3,NaN]}]}',
    ),
    "too many samples": _infer([v2_input("input__0", [0.0] * 4 * 17, [17, 4])]),
    "no data": _infer([{"name": "input__0", "datatype": "FP32", "shape": [1, 4]}]),
    "binary": _binary([1, 2, 3, 4], [1, 4]),
    "binary in, binary out": _binary(
        [1, 2, 3, 4], [1, 4], {"parameters": {"binary_data_output": True}}
    ),
    "binary size mismatch": _binary([1, 2, 3], [1, 4]),
    "header length not a number": _post(
        "/v2/models/affine/infer",
        _json({"inputs": [GOOD]}),
        AUTH + "Inference-Header-Content-Length: ten\r\n",
    ),
    "header length too long": _post(
        "/v2/models/affine/infer",
        _json({"inputs": [GOOD]}),
        AUTH + "Inference-Header-Content-Length: 99999\r\n",
    ),
    "oversize body": _infer([GOOD], padding="x" * 70000),
    "chunked body": (
        f"POST /v2/models/affine/infer HTTP/1.1\r\nHost: test\r\n{AUTH}"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    + b"%x\r\n%s\r\n0\r\n\r\n" % (len(_json({"inputs": [GOOD]})), _json({"inputs": [GOOD]})),
    "HTTP/1.0": _post("/v2/models/affine/infer", _json({"inputs": [GOOD]}), version="HTTP/1.0"),
    "connection close": _post(
        "/v2/models/affine/infer", _json({"inputs": [GOOD]}), AUTH + "Connection: close\r\n"
    ),
    "expect 100-continue": _post(
        "/v2/models/affine/infer", _json({"inputs": [GOOD]}), AUTH + "Expect: 100-continue\r\n"
    ),
    "GET on infer": b"GET /v2/models/affine/infer HTTP/1.1\r\nHost: test\r\n"
    + AUTH.encode()
    + b"\r\n",
}


def _read_response(sock: socket.socket) -> bytes:
    """One whole response: the head, and a body of its Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    if head.startswith(b"HTTP/1.1 100 "):
        return head + b"\r\n\r\n" + _read_response_from(sock, rest)
    return _complete(sock, head, rest)


def _read_response_from(sock: socket.socket, data: bytes) -> bytes:
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    return _complete(sock, head, rest)


def _complete(sock: socket.socket, head: bytes, rest: bytes) -> bytes:
    found = re.search(rb"\r\ncontent-length: (\d+)", head, re.IGNORECASE)
    length = int(found.group(1)) if found else 0
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def _exchange(server: Server, requests: list[bytes]) -> list[bytes]:
    """Send requests one after another on one connection; each answer, with `date` left out."""
    answers = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for request in requests:
            sock.sendall(request)
            answer = _read_response(sock)
            answers.append(re.sub(rb"\r\ndate: [^\r]*", b"", answer, flags=re.IGNORECASE))
    return answers


@pytest.fixture(scope="module")
def pair(
    models: dict[str, Path], logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    tokens = tmp_path_factory.mktemp("tokens") / "tokens"
    tokens.write_text(TOKEN + "\n")
    args = [
        str(models["affine"]),
        "--input", "input__0:FP32:-1,4",
        "--max-batch-size", "16",
        "--max-request-bytes", "65536",
        "--auth-token-file", str(tokens),
    ]  # fmt: skip
    hot = start_server(args, logs)
    asgi = start_server(args, logs, env={HOT_PATH_ENV: "0"})
    yield hot, asgi
    hot.stop()
    asgi.stop()


@pytest.mark.parametrize("case", list(CORPUS))
def test_the_hot_path_answers_as_the_asgi_app(pair: tuple[Server, Server], case: str) -> None:
    hot, asgi = pair
    request = CORPUS[case]
    assert _exchange(hot, [request]) == _exchange(asgi, [request])


def test_keep_alive_answers_match_over_one_connection(pair: tuple[Server, Server]) -> None:
    hot, asgi = pair
    requests = [CORPUS[c] for c in ("one sample", "bad shape", "no token", "binary", "one sample")]
    answers = _exchange(hot, requests)
    assert answers == _exchange(asgi, requests)
    assert [a.split(b" ", 2)[1] for a in answers] == [b"200", b"400", b"401", b"200", b"200"]


def test_metrics_and_statistics_count_the_same(pair: tuple[Server, Server]) -> None:
    def counts(server: Server) -> tuple[list[str], dict[str, Any]]:
        metrics = server.request("GET", "/metrics").body.decode().splitlines()
        counters = [
            line for line in metrics
            if line.startswith(("fermion_requests_total", "fermion_client_disconnects_total"))
            or line.startswith("fermion_request_duration_seconds_count")
        ]  # fmt: skip
        stats = server.request(
            "GET", "/v2/models/affine/stats", headers={"Authorization": f"Bearer {TOKEN}"}
        ).json()["model_stats"][0]
        inference = stats["inference_stats"]
        summary = {
            "inference_count": stats["inference_count"],
            "success": inference["success"]["count"],
            "fail": inference["fail"]["count"],
            "compute_output": inference["compute_output"]["count"],
        }
        return counters, summary

    hot, asgi = pair
    requests = [CORPUS[c] for c in ("one sample", "three samples", "bad shape", "binary")]
    for server in pair:
        _exchange(server, requests)
        _leave_mid_body(server)
    deadline = time.monotonic() + 5
    while counts(hot) != counts(asgi) and time.monotonic() < deadline:
        time.sleep(0.05)  # the disconnects are counted when each server notices them
    assert counts(hot) == counts(asgi)
    assert any('code="200",protocol="binary"' in line for line in counts(hot)[0])


def _leave_mid_body(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(CORPUS["one sample"][:-10])
        time.sleep(0.05)


def test_the_hot_path_takes_infer_requests_without_the_asgi_app(
    models: dict[str, Path],
) -> None:
    """Driven in-process: the app's ASGI entry is never called for a plain infer request, and
    is for anything else."""
    config = ServerConfig(
        models=(
            ModelConfig(
                name="affine", path=str(models["affine"]),
                inputs=(TensorSpec("input__0", "FP32", (-1, 4)),), max_batch_size=4,
            ),
        ),
    )  # fmt: skip
    server = build_server(config)
    assert issubclass(server.config.http, HotPathProtocol)  # type: ignore[arg-type]
    app = server.app
    asgi_calls: list[str] = []

    async def scenario() -> list[bytes]:
        app.models["affine"].load()
        app.models["affine"].start()
        writes: list[bytes] = []
        transport = _Transport(writes)
        protocol = _protocol(app, server)

        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            asgi_calls.append(scope["path"])
            await ServingApp.__call__(app, scope, receive, send)

        protocol.app = asgi
        protocol.connection_made(transport)  # type: ignore[arg-type]
        body = _json({"inputs": [GOOD]})
        protocol.data_received(_post("/v2/models/affine/infer", body))
        await _until(lambda: len(writes) == 1)
        protocol.data_received(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        await _until(lambda: b"".join(writes[1:]).endswith(b'{"live":true}'))
        await app.shutdown()
        return writes

    writes = asyncio.run(scenario())
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert json.loads(writes[0].partition(b"\r\n\r\n")[2])["outputs"][0]["data"] == [3, 5, 7, 9]
    assert asgi_calls == ["/v2/health/live"]


def test_access_log_and_the_switch_turn_the_hot_path_off(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ModelConfig(name="affine", path=str(models["affine"]))
    logged = build_server(ServerConfig(models=(model,), access_log=True))
    assert logged.config.http == "httptools"
    monkeypatch.setenv(HOT_PATH_ENV, "0")
    switched_off = build_server(ServerConfig(models=(model,)))
    assert switched_off.config.http == "httptools"
    for spelling in ("false", "OFF", " no "):
        monkeypatch.setenv(HOT_PATH_ENV, spelling)
        assert not hot_path_enabled(ServerConfig(models=(model,)))
    monkeypatch.setenv(HOT_PATH_ENV, "1")
    assert hot_path_enabled(ServerConfig(models=(model,)))


def test_an_untested_uvicorn_gets_the_asgi_path(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The hot path reads uvicorn's internals, so another uvicorn release serves through ASGI."""
    model = ModelConfig(name="affine", path=str(models["affine"]))
    monkeypatch.delenv(HOT_PATH_ENV, raising=False)
    monkeypatch.setattr(uvicorn, "__version__", "0.99.0")
    with caplog.at_level(logging.INFO, logger="fermion.server"):
        server = build_server(ServerConfig(models=(model,)))
    assert server.config.http == "httptools"
    assert "tested with uvicorn 0.54.x, not 0.99.0" in caplog.text


class _Transport:
    """Just enough of an asyncio transport for the protocol: it records what is written."""

    def __init__(self, writes: list[bytes]) -> None:
        self.writes = writes
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _protocol(app: ServingApp, server: Any) -> HotPathProtocol:
    cls = hot_path_protocol(app)
    return cls(config=server.config, server_state=server.server_state, app_state={})


async def _until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def test_pipelined_requests_are_answered_in_order_as_by_the_app(
    pair: tuple[Server, Server],
) -> None:
    """The second request reaches the server while the first is in flight: the hot path leaves
    it to the app, which answers it after the first, as it would have alone."""
    requests = CORPUS["one sample"] + CORPUS["three samples"] + CORPUS["bad shape"]

    def pipelined(server: Server) -> list[bytes]:
        data = b""
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(requests)
            while len(answers := _split(data)) < 3:
                chunk = sock.recv(65536)
                assert chunk, f"the connection closed after {data!r}"
                data += chunk
        return answers

    hot, asgi = pair
    answers = pipelined(hot)
    assert answers == pipelined(asgi)
    assert [a.split(b" ", 2)[1] for a in answers] == [b"200", b"200", b"400"]


def _split(data: bytes) -> list[bytes]:
    """The complete responses at the start of `data`, each by its Content-Length."""
    answers = []
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        found = re.search(rb"\r\ncontent-length: (\d+)", head, re.IGNORECASE)
        length = int(found.group(1)) if found else 0
        if len(rest) < length:
            break
        answers.append(head + b"\r\n\r\n" + rest[:length])
        data = rest[length:]
    return answers
