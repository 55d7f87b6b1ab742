"""A service's precision reaches handlers too: their models compute in fp16 or bf16."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from .conftest import Server, start_server, v2_input


@pytest.fixture(scope="module")
def handlers(
    models: dict[str, Path], logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    def model(name: str, handler: str, precision: str) -> dict[str, str]:
        return {
            "name": name,
            "path": str(models["handlers"]),
            "handler": f"handlers.py:{handler}",
            "format": "handler",
            "precision": precision,
        }

    config = tmp_path_factory.mktemp("precision") / "serving.json"
    config.write_text(
        json.dumps(
            {
                "models": [
                    model("fp32", "Precise", "fp32"),
                    model("fp16", "Precise", "fp16"),
                    model("bf16", "Precise", "bf16"),
                    model("owns-bf16", "OwnsPrecision", "bf16"),
                ]
            }
        )
    )
    server = start_server(["--config", str(config)], logs)
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)],
)
def test_a_handler_model_computes_in_the_service_precision(
    handlers: Server, precision: str, dtype: torch.dtype
) -> None:
    x = [[1.0, -2.0, 0.5, 3.0]]
    answer = handlers.infer(precision, {"inputs": [v2_input("x", x[0], [1, 4])]})
    assert answer.status == 200, answer.body
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["dtype"]["data"] == [str(dtype)]
    # The floating output goes back to its declared FP32, with the precision's rounding.
    assert outputs["y"]["datatype"] == "FP32"
    torch.manual_seed(0)
    expected = torch.nn.Linear(4, 4)(torch.tensor(x)).detach().flatten().tolist()
    tolerance = 1e-6 if dtype == torch.float32 else 0.05
    assert outputs["y"]["data"] == pytest.approx(expected, abs=tolerance)


def test_a_handler_that_takes_dtype_in_load_gets_it(handlers: Server) -> None:
    answer = handlers.infer("owns-bf16", {"inputs": [v2_input("x", [1.0], [1])]})
    assert answer.json()["outputs"][0]["data"] == ["torch.bfloat16"]
