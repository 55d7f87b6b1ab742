"""precision int8: dynamic quantization of Linear layers, for TorchScript and handler models; a
model it cannot apply to is refused at load with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from .conftest import start_server, v2_input


def test_a_torchscript_model_runs_with_int8_linear_layers(
    models: dict[str, Path], logs: Path
) -> None:
    server = start_server(
        [str(models["linear4"]), "--input", "input__0:FP32:-1,4", "--precision", "int8"], logs
    )
    try:
        x = [0.5, -1.0, 2.0, 0.25]
        answer = server.infer("linear4", {"inputs": [v2_input("input__0", x, [1, 4])]})
        config = server.request("GET", "/v2/models/linear4/config").json()
    finally:
        server.stop()
    assert answer.status == 200, answer.body
    out = answer.json()["outputs"][0]
    assert out["datatype"] == "FP32"
    reference = torch.jit.load(str(models["linear4"]))(torch.tensor([x])).flatten().tolist()
    # int8 weights and activations: close to fp32, not equal.
    assert out["data"] == pytest.approx(reference, abs=0.05)
    assert config["parameters"]["precision"] == {"string_value": "int8"}
    assert config["parameters"]["device"] == {"string_value": "cpu"}


def test_a_handler_model_is_quantized_and_computes_in_fp32(
    models: dict[str, Path], logs: Path
) -> None:
    server = start_server(
        [
            str(models["handlers"]),
            "--handler",
            "handlers.py:Precise",
            "--name",
            "precise",
            "--precision",
            "int8",
        ],
        logs,
    )
    try:
        x = [1.0, -2.0, 0.5, 3.0]
        answer = server.infer("precise", {"inputs": [v2_input("x", x, [1, 4])]})
    finally:
        server.stop()
    assert answer.status == 200, answer.body
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["dtype"]["data"] == ["torch.float32"]
    torch.manual_seed(0)
    expected = torch.nn.Linear(4, 4)(torch.tensor([x])).detach().flatten().tolist()
    assert outputs["y"]["data"] == pytest.approx(expected, abs=0.05)
    assert outputs["y"]["data"] != pytest.approx(expected, abs=1e-7)  # int8 did run


@pytest.mark.parametrize(
    ("model", "args", "reason"),
    [
        ("mlp_export", [], "a torch.export program has none left"),
        ("affine", ["--input", "input__0:FP32:-1,4"], "this TorchScript module has none"),
        ("handlers", ["--handler", "handlers.py:Echo", "--name", "echo"], "it holds none"),
    ],
    ids=["export", "torchscript-without-linear", "handler-without-modules"],
)
def test_int8_is_refused_where_there_is_nothing_to_quantize(
    models: dict[str, Path], logs: Path, model: str, args: list[str], reason: str
) -> None:
    server = start_server(
        [str(models[model]), *args, "--precision", "int8"], logs, wait_ready=False
    )
    try:
        assert server.process.wait(timeout=60) == 1
    finally:
        server.stop()
    output = server.output()
    assert "precision int8" in output and reason in output
    assert "pick fp32, fp16 or bf16" in output
