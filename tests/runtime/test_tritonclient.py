"""A stock V2 client, tritonclient[http], works unmodified: JSON and binary, every datatype."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from .conftest import Server, start_server

ECHO_INPUTS = {
    "bool": ("BOOL", np.array([True, False, True])),
    "u8": ("UINT8", np.array([0, 7, 255], dtype=np.uint8)),
    "i8": ("INT8", np.array([-128, 0, 127], dtype=np.int8)),
    "i16": ("INT16", np.array([-300, 0, 300], dtype=np.int16)),
    "i32": ("INT32", np.array([-(2**31), 0, 2**31 - 1], dtype=np.int32)),
    "i64": ("INT64", np.array([-(2**62), 0, 2**62], dtype=np.int64)),
    "f16": ("FP16", np.array([0.5, -1.25, 65504], dtype=np.float16)),
    "f32": ("FP32", np.array([0.1, -2.5, 3e38], dtype=np.float32)),
    "f64": ("FP64", np.array([0.1, -2.5, 1e300], dtype=np.float64)),
    "text": ("BYTES", np.array([b"hello", "w\u00f6rld".encode(), b""], dtype=object)),
}


@pytest.fixture(scope="module")
def echo(models: dict[str, Path], logs: Path) -> Iterator[Server]:
    server = start_server(
        [str(models["handlers"]), "--handler", "handlers.py:Echo", "--name", "echo"], logs
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def affine_client(affine: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(affine.address)


def test_health_and_metadata_through_the_client(
    affine: Server, affine_client: triton.InferenceServerClient
) -> None:
    assert affine_client.is_server_live()
    assert affine_client.is_server_ready()
    assert affine_client.is_model_ready("affine")
    meta = affine_client.get_model_metadata("affine")
    assert meta["inputs"][0]["shape"] == [-1, 4]
    assert affine_client.get_server_metadata()["name"] == "fermion"


def test_model_config_through_the_client(
    affine_client: triton.InferenceServerClient, echo: Server
) -> None:
    config = affine_client.get_model_config("affine")
    assert config["name"] == "affine" and config["backend"] == "pytorch"
    assert config["max_batch_size"] == 16  # so dims leave the batch dimension out
    assert config["input"] == [{"name": "input__0", "data_type": "TYPE_FP32", "dims": [4]}]
    assert config["output"] == [{"name": "output__0", "data_type": "TYPE_FP32", "dims": [4]}]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 20_000
    assert affine_client.get_model_config("affine", "1") == config
    with pytest.raises(InferenceServerException, match="no model 'nope'"):
        affine_client.get_model_config("nope")
    handler = triton.InferenceServerClient(echo.address).get_model_config("echo")
    assert handler["max_batch_size"] == 0 and handler["backend"] == "python"
    text = next(t for t in handler["input"] if t["name"] == "text")
    assert text == {"name": "text", "data_type": "TYPE_STRING", "dims": [-1]}


def test_inference_statistics_through_the_client(
    affine_client: triton.InferenceServerClient,
) -> None:
    def stats() -> dict[str, Any]:
        (entry,) = affine_client.get_inference_statistics("affine")["model_stats"]
        return entry

    before = stats()
    x = np.ones((2, 4), dtype=np.float32)
    tensor = triton.InferInput("input__0", [2, 4], "FP32")
    tensor.set_data_from_numpy(x)
    for _ in range(3):
        affine_client.infer("affine", [tensor])
    bad = triton.InferInput("input__0", [1, 5], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 5), dtype=np.float32))
    with pytest.raises(InferenceServerException):
        affine_client.infer("affine", [bad])
    after = stats()
    assert after["name"] == "affine" and after["version"] == "1"
    assert after["inference_count"] - before["inference_count"] == 6  # samples
    assert 1 <= after["execution_count"] - before["execution_count"] <= 3
    done, was = after["inference_stats"], before["inference_stats"]
    for kind, added in (("success", 3), ("fail", 1), ("queue", 3), ("compute_infer", 3)):
        assert done[kind]["count"] - was[kind]["count"] == added, kind
        assert done[kind]["ns"] > was[kind]["ns"], kind
    assert after["last_inference"] > 0
    assert (
        sum(b["compute_infer"]["count"] for b in after["batch_stats"]) == after["execution_count"]
    )
    every = affine_client.get_inference_statistics()["model_stats"]
    assert [m["name"] for m in every] == ["affine"]
    assert (
        affine_client.get_inference_statistics("affine", "1")["model_stats"][0]["name"] == "affine"
    )


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_with_tritonclient(affine_client: triton.InferenceServerClient, binary: bool) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    tensor = triton.InferInput("input__0", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    wanted = triton.InferRequestedOutput("output__0", binary_data=binary)
    result = affine_client.infer("affine", [tensor], outputs=[wanted], request_id="7")
    np.testing.assert_array_equal(result.as_numpy("output__0"), x * 2 + 1)
    assert result.get_response()["id"] == "7"


def test_client_defaults_binary_outputs(affine_client: triton.InferenceServerClient) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    tensor = triton.InferInput("input__0", [1, 4], "FP32")
    tensor.set_data_from_numpy(x)
    result = affine_client.infer("affine", [tensor])
    np.testing.assert_array_equal(result.as_numpy("output__0"), x * 3)
    assert "binary_data_size" in result.get_response()["outputs"][0]["parameters"]


def test_errors_reach_the_client(affine_client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("input__0", [1, 5], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 5), dtype=np.float32))
    with pytest.raises(InferenceServerException, match=r"expected \[-1, 4\]"):
        affine_client.infer("affine", [tensor])


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_every_datatype_round_trips(echo: Server, binary: bool) -> None:
    client = triton.InferenceServerClient(echo.address)
    inputs, outputs = [], []
    for name, (dtype, array) in ECHO_INPUTS.items():
        tensor = triton.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
        outputs.append(triton.InferRequestedOutput(f"{name}_out", binary_data=binary))
    bf16 = triton.InferInput("bf16", [3], "BF16")
    bf16_values = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    # BF16 travels only as binary: the top 16 bits of each float32.
    bf16._raw_data = (bf16_values.view(np.uint32) >> 16).astype("<u2").tobytes()
    bf16._parameters["binary_data_size"] = len(bf16._raw_data)
    inputs.append(bf16)
    outputs.append(triton.InferRequestedOutput("bf16_out", binary_data=True))
    result = client.infer("echo", inputs, outputs=outputs)
    for name, (dtype, array) in ECHO_INPUTS.items():
        got = result.as_numpy(f"{name}_out")
        assert result.get_output(f"{name}_out")["datatype"] == dtype
        if dtype == "BYTES":  # the client gives str for JSON and bytes for binary
            assert [v if isinstance(v, bytes) else v.encode() for v in got] == list(array)
        else:
            np.testing.assert_array_equal(got, array)
    raw = result.get_output("bf16_out")
    assert raw["datatype"] == "BF16"
    assert raw["shape"] == [3]


def test_bf16_in_json_is_refused(echo: Server) -> None:
    answer = echo.infer(
        "echo", {"inputs": [{"name": "bf16", "datatype": "BF16", "shape": [1], "data": [1.0]}]}
    )
    assert answer.status == 400
    assert "travel only as binary" in answer.json()["error"]
