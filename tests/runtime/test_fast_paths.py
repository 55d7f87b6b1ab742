"""Paths that were changed for speed keep their answers: FP32 JSON data is read straight into
single precision, and a batch's outputs are handed back as numpy views of one array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fermion.runtime_images.server.config import ModelConfig, parse_tensor_spec
from fermion.runtime_images.server.errors import BadRequest
from fermion.runtime_images.server.handlers import TorchModelHandler
from fermion.runtime_images.server.tensors import DATATYPES, from_json


@pytest.mark.parametrize("name", ["FP16", "FP32", "FP64"])
def test_float_json_data_reads_as_numpy_would(name: str) -> None:
    data = [0.1, -2.5, 1, 3.4028235e38, 1e39, -1e39, True, 1e-46]
    dtype = DATATYPES[name]
    with np.errstate(over="ignore"):
        expected = np.asarray(data, dtype=np.float64).astype(dtype.numpy)
    got = from_json(data, dtype, (2, 4), "input 'x'")
    assert got.dtype == dtype.numpy and got.shape == (2, 4)
    np.testing.assert_array_equal(got.reshape(-1), expected)


def test_float_json_data_that_is_not_numbers_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="is not a list of FP32 values"):
        from_json([1.0, "two"], DATATYPES["FP32"], (2,), "input 'x'")


def test_a_batch_answers_each_request_with_its_own_rows(models: dict[str, Path]) -> None:
    config = ModelConfig(
        name="linear4", path=str(models["linear4"]), inputs=(parse_tensor_spec("x:FP32:-1,4"),)
    )
    handler = TorchModelHandler(models["linear4"], config)
    handler.load(models["linear4"], torch.device("cpu"))
    requests = [np.arange(rows * 4, dtype=np.float32).reshape(rows, 4) for rows in (1, 3, 2)]
    answers = handler.predict([handler.preprocess({"x": x}) for x in requests])
    module = torch.jit.load(str(models["linear4"]))
    for x, answer in zip(requests, answers, strict=True):
        (output,) = answer
        assert isinstance(output, np.ndarray) and output.flags.c_contiguous
        np.testing.assert_allclose(output, module(torch.from_numpy(x)).detach().numpy())


def test_bf16_outputs_stay_tensors(models: dict[str, Path]) -> None:
    config = ModelConfig(
        name="linear4",
        path=str(models["linear4"]),
        inputs=(parse_tensor_spec("x:FP32:-1,4"),),
        precision="bf16",
    )
    handler = TorchModelHandler(models["linear4"], config)
    handler.load(models["linear4"], torch.device("cpu"))
    x = np.ones((1, 4), dtype=np.float32)
    answers = handler.predict([handler.preprocess({"x": x}), handler.preprocess({"x": x})])
    assert all(a[0].dtype == torch.bfloat16 for a in answers)
