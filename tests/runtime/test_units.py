"""The serving runtime's pure parts: batch collection, tensor codecs, configuration."""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fermion.runtime_images.server.batching import Work, WorkQueue, collect_batch
from fermion.runtime_images.server.config import ConfigError, ModelConfig, load_config_file
from fermion.runtime_images.server.errors import BadRequest, Overloaded
from fermion.runtime_images.server.protocol import (
    InferRequest,
    RequestedOutput,
    encode_infer_response,
    parse_infer_request,
)
from fermion.runtime_images.server.served_model import warmup_sizes
from fermion.runtime_images.server.tensors import DATATYPES, from_binary, to_binary


def _work(loop: asyncio.AbstractEventLoop, rows: int = 1) -> Work:
    return Work(item=rows, rows=rows, future=loop.create_future())


def test_collect_batch_takes_what_is_queued_without_waiting() -> None:
    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        queue = WorkQueue(100, "m")
        for _ in range(5):
            queue.put(_work(loop))
        started = loop.time()
        batch = await collect_batch(queue, max_size=8, max_delay=1.0)
        assert loop.time() - started < 0.5  # nothing was arriving: no wait for the delay
        return [w.rows for w in batch]

    assert asyncio.run(scenario()) == [1, 1, 1, 1, 1]


def test_collect_batch_stops_at_max_size_and_keeps_order() -> None:
    async def scenario() -> tuple[list[int], int]:
        loop = asyncio.get_running_loop()
        queue = WorkQueue(100, "m")
        for rows in (3, 4, 2, 1):
            queue.put(_work(loop, rows))
        batch = await collect_batch(queue, max_size=8, max_delay=0)
        return [w.rows for w in batch], len(queue)

    # 3 + 4 = 7 fit; the 2 does not, so it leads the next batch.
    assert asyncio.run(scenario()) == ([3, 4], 2)


def test_collect_batch_waits_for_arrivals_until_the_deadline() -> None:
    async def scenario() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        queue = WorkQueue(100, "m")
        queue.put(_work(loop))
        queue.arriving = 1

        async def late() -> None:
            await asyncio.sleep(0.05)
            queue.put(_work(loop))
            queue.arriving = 0

        task = loop.create_task(late())
        started = loop.time()
        batch = await collect_batch(queue, max_size=8, max_delay=0.5)
        await task
        return len(batch), loop.time() - started

    size, waited = asyncio.run(scenario())
    assert size == 2
    assert waited < 0.5  # it stopped waiting once nothing more was arriving


def test_collect_batch_skips_requests_that_timed_out() -> None:
    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        queue = WorkQueue(100, "m")
        stale = _work(loop, 5)
        stale.future.cancel()
        queue.put(stale)
        queue.put(_work(loop, 2))
        return [w.rows for w in await collect_batch(queue, 8, 0)]

    assert asyncio.run(scenario()) == [2]


def test_a_full_queue_refuses() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        queue = WorkQueue(1, "m")
        queue.put(_work(loop))
        with pytest.raises(Overloaded):
            queue.put(_work(loop))

    asyncio.run(scenario())


def test_warmup_sizes() -> None:
    assert warmup_sizes(4) == [1, 2, 3, 4]
    assert warmup_sizes(100) == [1, 2, 4, 8, 16, 32, 64, 100]


NUMERIC = [name for name, d in DATATYPES.items() if d.numpy is not None and name != "BYTES"]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(NUMERIC), st.data())
def test_binary_round_trip(name: str, data: st.DataObject) -> None:
    dtype = DATATYPES[name]
    assert dtype.numpy is not None
    array = data.draw(
        hnp.arrays(
            dtype.numpy,
            hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
            elements={"allow_nan": False} if name.startswith("FP") else None,
        )
    )
    datatype, shape, raw = to_binary(array)
    assert datatype == name and shape == list(array.shape)
    back = from_binary(memoryview(bytearray(raw)), dtype, tuple(shape), "x")
    np.testing.assert_array_equal(np.asarray(back), array)


def test_bf16_binary_round_trip() -> None:
    tensor = torch.tensor([[1.0, -2.5], [0.15625, 3.0]], dtype=torch.bfloat16)
    datatype, shape, raw = to_binary(tensor)
    assert datatype == "BF16"
    back = from_binary(memoryview(bytearray(raw)), DATATYPES["BF16"], tuple(shape), "x")
    assert isinstance(back, torch.Tensor)
    assert torch.equal(back, tensor)


def test_bytes_binary_round_trip_and_truncation() -> None:
    items = np.array([b"a", b"", "\u00e9".encode()], dtype=object)
    _, shape, raw = to_binary(items)
    back = from_binary(memoryview(raw), DATATYPES["BYTES"], tuple(shape), "x")
    assert list(back) == list(items)
    with pytest.raises(BadRequest, match="runs past the end"):
        from_binary(memoryview(raw[:-1]), DATATYPES["BYTES"], (3,), "x")
    with pytest.raises(BadRequest, match="left over"):
        from_binary(memoryview(raw + struct.pack("<I", 0)), DATATYPES["BYTES"], (3,), "x")


def test_binary_request_is_read_without_a_copy() -> None:
    x = np.arange(6, dtype=np.float32)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "a",
                    "datatype": "FP32",
                    "shape": [2, 3],
                    "parameters": {"binary_data_size": 24},
                }
            ]
        }
    ).encode()
    body = bytearray(header + x.tobytes())
    request = parse_infer_request(body, len(header))
    (tensor,) = request.inputs
    np.testing.assert_array_equal(tensor.data, x.reshape(2, 3))
    body[len(header)] = 0  # the array views the request body itself
    assert tensor.data[0, 0] == 0 and np.shares_memory(tensor.data, np.frombuffer(body, np.uint8))


@pytest.mark.parametrize(
    ("header_length", "message"),
    [(0, "Inference-Header-Content-Length is 0"), (10_000, "but the body has")],
)
def test_bad_header_length(header_length: int, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_infer_request(bytearray(b'{"inputs": []}'), header_length)


def test_binary_sizes_must_add_up() -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "a",
                    "datatype": "FP32",
                    "shape": [2],
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    ).encode()
    with pytest.raises(BadRequest, match="runs past the end"):
        parse_infer_request(bytearray(header + b"\0" * 4), len(header))
    with pytest.raises(BadRequest, match="follow the last input"):
        parse_infer_request(bytearray(header + b"\0" * 12), len(header))


def test_response_mixes_json_and_binary_outputs() -> None:
    request = InferRequest(
        id="9",
        inputs=(),
        outputs=(RequestedOutput("a", True), RequestedOutput("b", False)),
        binary_output=False,
        binary_input=False,
    )
    a = np.arange(3, dtype=np.int32)
    b = np.array([0.5], dtype=np.float32)
    encoded = encode_infer_response("m", "1", request, {"a": a, "b": b})
    assert encoded.header_length is not None
    header: dict[str, Any] = json.loads(encoded.body[: encoded.header_length])
    assert header["id"] == "9"
    first, second = header["outputs"]
    assert first["parameters"]["binary_data_size"] == 12 and "data" not in first
    assert second["data"] == [0.5]
    assert encoded.body[encoded.header_length :] == a.tobytes()


def test_model_config_rules() -> None:
    with pytest.raises(ConfigError, match="max_batch_size must be at least 1"):
        ModelConfig(name="m", path="x", max_batch_size=0)
    with pytest.raises(ConfigError, match="model name"):
        ModelConfig(name="bad name", path="x")
    with pytest.raises(ConfigError, match="precision"):
        ModelConfig(name="m", path="x", precision="int4")


def test_serving_json(tmp_path: Path) -> None:
    path = tmp_path / "serving.json"
    path.write_text(
        json.dumps(
            {
                "port": 9000,
                "models": [{"name": "m", "path": "/models/m", "inputs": ["input__0:FP32:-1,4"]}],
            }
        )
    )
    config = load_config_file(path)
    assert config.port == 9000
    assert config.models[0].inputs[0].shape == (-1, 4)
    path.write_text(json.dumps({"models": [{"name": "m", "path": "p", "colour": 1}]}))
    with pytest.raises(ConfigError, match="unknown model keys"):
        load_config_file(path)


def test_a_file_of_known_size_is_fetched_in_one_range_per_stream_within_bounds() -> None:
    from fermion.runtime_images.server.storage import part_bytes

    mib = 1 << 20
    assert part_bytes(None) == 16 * mib
    assert part_bytes(100 * mib) == 16 * mib  # small files: no range below 16 MiB
    assert part_bytes(1024 * mib) == -(-1024 * mib // 10)  # ten ranges, one per stream
    assert part_bytes(100 * 1024 * mib) == 256 * mib  # huge files: a retry refetches <= 256 MiB
