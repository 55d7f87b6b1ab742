"""The V2 REST routes and their error codes, against a real server process."""

from __future__ import annotations

import json
import re
import socket
import time

from .conftest import Server, v2_input


def test_health_and_server_metadata(affine: Server) -> None:
    assert affine.request("GET", "/v2/health/live").json() == {"live": True}
    assert affine.request("GET", "/v2/health/ready").json() == {"ready": True}
    meta = affine.request("GET", "/v2").json()
    assert meta["name"] == "fermion"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_versions(affine: Server) -> None:
    meta = affine.request("GET", "/v2/models/affine").json()
    assert meta["platform"] == "pytorch_torchscript"
    assert meta["inputs"] == [{"name": "input__0", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "output__0", "datatype": "FP32", "shape": [-1, 4]}]
    assert affine.request("GET", "/v2/models/affine/versions/1").json() == meta
    assert affine.request("GET", "/v2/models/affine/ready").json() == {
        "name": "affine",
        "ready": True,
    }
    assert affine.request("GET", "/v2/models/affine/versions/1/ready").status == 200


def test_infer_json(affine: Server) -> None:
    body = {"id": "r-1", "inputs": [v2_input("input__0", [[1, 2, 3, 4], [5, 6, 7, 8]], [2, 4])]}
    for path in ("/v2/models/affine/infer", "/v2/models/affine/versions/1/infer"):
        answer = affine.request("POST", path, body)
        assert answer.status == 200, answer.body
        assert answer.headers["content-type"] == "application/json"
        out = answer.json()
        assert out["id"] == "r-1"
        assert out["model_name"] == "affine" and out["model_version"] == "1"
        (tensor,) = out["outputs"]
        assert tensor["name"] == "output__0" and tensor["shape"] == [2, 4]
        assert tensor["data"] == [3, 5, 7, 9, 11, 13, 15, 17]


def test_openapi_document(affine: Server) -> None:
    doc = affine.request("GET", "/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/v2/models/{model_name}/infer" in doc["paths"]


def test_metrics_count_requests_by_code(affine: Server) -> None:
    affine.infer("affine", {"inputs": [v2_input("input__0", [1, 2, 3, 4], [1, 4])]})
    affine.infer("affine", {"inputs": [v2_input("input__0", [1, 2, 3], [1, 3])]})
    text = affine.request("GET", "/metrics").body.decode()
    assert 'fermion_requests_total{model="affine",code="200",protocol="json"}' in text
    assert 'fermion_requests_total{model="affine",code="400",protocol="json"}' in text
    names = (
        "fermion_request_duration_seconds_bucket",
        "fermion_batch_size_bucket",
        "fermion_queue_depth",
        "fermion_in_flight",
        "fermion_model_load_seconds",
    )
    for name in names:
        assert name in text, name


BAD = [
    # (body, fragment of the error)
    ({"inputs": [v2_input("x", [1, 2, 3, 4], [1, 4])]}, "has no input 'x'; its inputs are"),
    ({"inputs": [v2_input("input__0", [1, 2, 3], [1, 3])]}, "has shape [1, 3]; expected [-1, 4]"),
    ({"inputs": [v2_input("input__0", [1, 2, 3], [1, 4])]}, "holds 4 elements, but `data` has 3"),
    ({"inputs": [v2_input("input__0", [1, 2, 3, 4], [1, 4], "FP64")]}, "is FP64; expected FP32"),
    ({"inputs": [v2_input("input__0", [1, 2, 3, 4], [1, 4], "FP128")]}, "is not one of BOOL"),
    ({"inputs": [v2_input("input__0", ["a", "b", "c", "d"], [1, 4])]}, "not a list of FP32"),
    ({"inputs": [v2_input("input__0", [1] * 68, [17, 4])]}, "takes at most 16 per request"),
    ({"inputs": []}, "non-empty `inputs` list"),
    ({"inputs": [{"name": "input__0", "shape": [1, 4], "datatype": "FP32"}]}, "neither `data`"),
    ({"inputs": [{"name": "input__0", "shape": [-1, 4], "datatype": "FP32", "data": []}]},
     "non-negative integers"),
    ({"inputs": [v2_input("input__0", [1, 2, 3, 4], [1, 4])],
      "outputs": [{"name": "nope"}]}, "has no output 'nope'; outputs: output__0"),
]  # fmt: skip


def test_bad_requests_get_400_with_the_reason(affine: Server) -> None:
    for body, fragment in BAD:
        answer = affine.infer("affine", body)
        assert answer.status == 400, (body, answer.body)
        assert fragment in answer.json()["error"], (fragment, answer.json())
    raw = affine.request("POST", "/v2/models/affine/infer", b"{not json")
    assert raw.status == 400 and "not valid JSON" in raw.json()["error"]
    # The server keeps serving after bad input.
    good = affine.infer("affine", {"inputs": [v2_input("input__0", [0, 0, 0, 0], [1, 4])]})
    assert good.status == 200


def test_unknown_model_version_and_route_get_404(affine: Server) -> None:
    missing = affine.request("GET", "/v2/models/nope")
    assert missing.status == 404
    assert "this server serves: affine" in missing.json()["error"]
    assert affine.request("GET", "/v2/models/affine/versions/7").status == 404
    assert affine.request("POST", "/v2/models/nope/infer", {"inputs": []}).status == 404
    assert affine.request("GET", "/v3/anything").status == 404
    assert affine.request("GET", "/v2/models/affine/infer/extra").status == 404


def test_wrong_method_gets_405_with_allow(affine: Server) -> None:
    infer = affine.request("GET", "/v2/models/affine/infer")
    assert infer.status == 405 and infer.headers.get("allow") == "POST"
    assert "use POST" in infer.json()["error"]
    ready = affine.request("POST", "/v2/health/ready", b"")
    assert ready.status == 405 and ready.headers.get("allow") == "GET, HEAD"
    assert affine.request("HEAD", "/v2/health/ready").status == 200


def test_openapi_document_lists_exactly_the_routes_served(affine: Server) -> None:
    doc = affine.request("GET", "/openapi.json").json()
    assert "/openapi.json" in doc["paths"]
    assert "security" not in doc  # this server has no tokens
    for pattern, operations in doc["paths"].items():
        path = pattern.replace("{model_name}", "affine").replace("{model_version}", "1")
        for method, operation in operations.items():
            answer = affine.request(method.upper(), path, b"{}" if method == "post" else None)
            assert answer.status not in (404, 405), (method, path, answer.body)
            names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
            assert names == re.findall(r"{(\w+)}", pattern)


def _counter(server: Server, name: str) -> float:
    text = server.request("GET", "/metrics").body.decode()
    found = re.search(rf"^{re.escape(name)} ([0-9.]+)$", text, re.MULTILINE)
    return 0.0 if found is None else float(found.group(1))


def test_a_client_that_leaves_mid_request_is_no_error(affine: Server) -> None:
    head = (
        b"POST /v2/models/affine/infer HTTP/1.1\r\nHost: test\r\n"
        b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
    )
    disconnects = 'fermion_client_disconnects_total{model="affine"}'
    unavailable = 'fermion_requests_total{model="affine",code="503",protocol="json"}'
    before = _counter(affine, disconnects)
    for partial in (head, head + b'{"inputs": [{"name": "input__0", '):
        with socket.create_connection(("127.0.0.1", affine.port), timeout=5) as raw:
            raw.sendall(partial)
            time.sleep(0.05)  # let the server start on the request, then leave
    deadline = time.monotonic() + 5
    while _counter(affine, disconnects) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _counter(affine, disconnects) == before + 2
    assert _counter(affine, unavailable) == 0  # no 503 was answered to nobody, nor counted
    good = affine.infer("affine", {"inputs": [v2_input("input__0", [1, 2, 3, 4], [1, 4])]})
    assert good.status == 200


def test_a_body_over_the_limit_gets_413(affine: Server) -> None:
    big = json.dumps({"inputs": [v2_input("input__0", [0.5] * 16 * 4, [16, 4])]}).encode()
    big += b" " * 70000  # JSON allows trailing whitespace; the size is what counts
    answer = affine.request("POST", "/v2/models/affine/infer", big)
    assert answer.status == 413
    assert "over the limit of 65536 bytes" in answer.json()["error"]
