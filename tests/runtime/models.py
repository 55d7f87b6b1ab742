"""Models and handlers the runtime tests serve, built in code."""

from __future__ import annotations

from pathlib import Path

import torch

HANDLERS = '''
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


class Echo:
    """Returns every input as an output of the same name, for datatype round trips."""

    inputs = [
        "bool:BOOL:-1", "u8:UINT8:-1", "i8:INT8:-1", "i16:INT16:-1", "i32:INT32:-1",
        "i64:INT64:-1", "f16:FP16:-1", "f32:FP32:-1", "f64:FP64:-1", "bf16:BF16:-1",
        "text:BYTES:-1",
    ]

    def load(self, model_dir: Path, device: torch.device) -> None:
        self.loaded_from = model_dir

    def preprocess(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return inputs

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch

    def postprocess(self, output: dict[str, Any]) -> dict[str, Any]:
        return {f"{name}_out": value for name, value in output.items()}


class Slow:
    """Doubles its input after 0.3 s, or after 2 s when the first value is negative."""

    inputs = ["x:FP32:-1"]
    outputs = ["y:FP32:-1"]

    def load(self, model_dir: Path, device: torch.device) -> None:
        self.delay = 0.3

    def preprocess(self, inputs: dict[str, Any]) -> torch.Tensor:
        return torch.from_numpy(inputs["x"].copy())

    def predict(self, batch: list[torch.Tensor]) -> list[torch.Tensor]:
        if float(batch[0][0]) < 0:
            time.sleep(2.0)
        else:
            time.sleep(self.delay)
        return [x * 2 for x in batch]

    def postprocess(self, output: torch.Tensor) -> dict[str, Any]:
        return {"y": output}


class Flaky:
    """Fails on a batch that holds the value 13, and doubles otherwise."""

    inputs = ["x:FP32:-1"]
    outputs = ["y:FP32:-1"]

    def load(self, model_dir: Path, device: torch.device) -> None:
        pass

    def preprocess(self, inputs: dict[str, Any]) -> np.ndarray:
        return inputs["x"]

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        if any(13 in item for item in batch):
            raise RuntimeError("unlucky number")
        return [item * 2 for item in batch]

    def postprocess(self, output: np.ndarray) -> dict[str, Any]:
        return {"y": output}


class Precise:
    """A linear layer; answers with its output and the dtype the layer computed in."""

    inputs = ["x:FP32:-1,4"]
    outputs = ["y:FP32:-1,4", "dtype:BYTES:1"]

    def load(self, model_dir: Path, device: torch.device) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(4, 4)

    def preprocess(self, inputs: dict[str, Any]) -> torch.Tensor:
        return torch.from_numpy(inputs["x"].copy())  # float32, as the client sent it

    def predict(self, batch: list[torch.Tensor]) -> list[torch.Tensor]:
        with torch.inference_mode():
            return [self.model(x) for x in batch]

    def postprocess(self, output: torch.Tensor) -> dict[str, Any]:
        return {"y": output, "dtype": np.array([str(output.dtype).encode()], dtype=object)}


class OwnsPrecision:
    """Takes the service's dtype in load() and answers with it."""

    inputs = ["x:FP32:-1"]
    outputs = ["dtype:BYTES:1"]

    def load(self, model_dir: Path, device: torch.device, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def preprocess(self, inputs: dict[str, Any]) -> Any:
        return inputs

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch

    def postprocess(self, output: Any) -> dict[str, Any]:
        return {"dtype": np.array([str(self.dtype).encode()], dtype=object)}


class BadWarmUp:
    """Loads, then fails on its first (warm-up) request: it reads an input it never declared."""

    inputs = ["x:FP32:-1"]

    def load(self, model_dir: Path, device: torch.device) -> None:
        pass

    def preprocess(self, inputs: dict[str, Any]) -> Any:
        return inputs["text"]

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch

    def postprocess(self, output: Any) -> dict[str, Any]:
        return output


class BadLoad:
    inputs = ["x:FP32:-1"]

    def load(self, model_dir: Path, device: torch.device) -> None:
        raise FileNotFoundError("weights.bin is missing")

    def preprocess(self, inputs: dict[str, Any]) -> Any:
        return inputs

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch

    def postprocess(self, output: Any) -> dict[str, Any]:
        return output
'''


class Affine(torch.nn.Module):
    """y = 2x + 1 row by row, so each request's answer shows it got its own rows back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 + 1


class SlowAffine(torch.nn.Module):
    """Affine, after tens of milliseconds of matrix work, so concurrent requests must queue."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(600, 600), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        burn = self.weight
        for _ in range(8):
            burn = torch.mm(burn, self.weight) / 600.0
        return x * 2 + 1 + 0 * burn.mean()


class TwoHeads(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a + b.sum(dim=1, keepdim=True), (a * 0).to(torch.int64)


def build(folder: Path) -> dict[str, Path]:
    """Write every test model into `folder`; returns their paths by name."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    paths = {}
    paths["affine"] = folder / "affine.pt"
    torch.jit.script(Affine()).save(str(paths["affine"]))
    paths["slow_affine"] = folder / "slow_affine.pt"
    torch.jit.script(SlowAffine()).save(str(paths["slow_affine"]))
    paths["linear4"] = folder / "linear4.pt"  # expects 4 features
    torch.jit.script(torch.nn.Linear(4, 3).eval()).save(str(paths["linear4"]))
    paths["two_heads"] = folder / "two_heads.pt"
    torch.jit.script(TwoHeads()).save(str(paths["two_heads"]))
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    program = torch.export.export(
        mlp.eval(), (torch.randn(2, 8),), dynamic_shapes=({0: torch.export.Dim("batch", max=1024)},)
    )
    paths["mlp_export"] = folder / "mlp.pt2"
    torch.export.save(program, str(paths["mlp_export"]))
    paths["mlp_state"] = folder / "mlp_state.pt"
    torch.save(mlp.state_dict(), str(paths["mlp_state"]))
    handlers = folder / "handlers"
    handlers.mkdir(exist_ok=True)
    (handlers / "handlers.py").write_text(HANDLERS)
    paths["handlers"] = handlers
    return paths
