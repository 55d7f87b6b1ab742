"""One benchmark model behind KServe's `kserve.ModelServer` (V2 protocol, REST only).

KServe's model server has no dynamic batcher: each request runs preprocess/predict/postprocess
on its own. One uvicorn worker, gRPC off, per-request latency logging off. KServe 0.21 binds
its REST server to 0.0.0.0; this file rebinds it to 127.0.0.1 before it starts.

    python kserve_server.py --model mlp --workdir DIR --port 8080
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kserve
import kserve.model_server
import models
from kserve import InferOutput, InferRequest, InferResponse
from kserve.protocol.rest.server import RESTServer
from kserve.utils.utils import generate_uuid


class LoopbackRESTServer(RESTServer):
    """KServe's REST server, bound to 127.0.0.1 instead of the hard-coded 0.0.0.0."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config.host = "127.0.0.1"


kserve.model_server.RESTServer = LoopbackRESTServer  # type: ignore[misc]


class BenchModel(kserve.Model):
    def __init__(self, key: str, workdir: Path) -> None:
        super().__init__(key)
        self.key = key
        self.workdir = workdir
        self.spec = models.SPECS[key]

    def load(self) -> bool:
        torch.set_num_threads(1)
        self.runner = models.Runner(self.key, self.workdir)
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> Any:
        tensor = next(t for t in payload.inputs if t.name == self.spec.input_name)
        x = tensor.as_numpy()
        if tensor.datatype == "BYTES":
            x = x.astype(object)
            x.flat[:] = [s if isinstance(s, bytes) else str(s).encode() for s in x.flat]
        y = self.runner.predict([self.runner.preprocess(x)])[0]
        out = InferOutput(name=self.spec.output_name, shape=list(y.shape), datatype="FP32")
        out.set_data_from_numpy(y, binary_data=False)
        return InferResponse(
            model_name=self.name, infer_outputs=[out], response_id=payload.id or generate_uuid()
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, choices=sorted(models.SPECS))
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--port", required=True, type=int)
    a, _ = p.parse_known_args()
    torch.set_num_threads(1)
    model = BenchModel(a.model, a.workdir)
    model.load()
    server = kserve.ModelServer(
        http_port=a.port,
        workers=1,
        enable_grpc=False,
        enable_latency_logging=False,
    )
    # No per-request log lines (uvicorn access log, KServe timing trace).
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    main()
