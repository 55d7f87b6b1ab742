"""One benchmark model behind LitServe, with LitServe's dynamic batching on.

Speaks the Open Inference Protocol (V2) JSON body on POST /v2/models/NAME/infer: decode_request
parses the V2 request, encode_response returns a V2-shaped answer. One inference worker, one
API server; readiness on GET /health.

    python litserve_server.py --model mlp --workdir DIR --port 8000
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import litserve as ls
import models

V2_NP = {"FP32": np.float32, "BYTES": np.object_}


class V2API(ls.LitAPI):
    def __init__(self, key: str, workdir: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key = key
        self.workdir = workdir
        self.mspec = models.SPECS[key]

    def setup(self, device: str) -> None:
        torch.set_num_threads(1)
        self.runner = models.Runner(self.key, self.workdir)

    def decode_request(self, request):  # type: ignore[no-untyped-def]  # unannotated: LitServe passes the parsed JSON body
        tensor = next(t for t in request["inputs"] if t["name"] == self.mspec.input_name)
        if tensor["datatype"] == "BYTES":
            x = np.array([str(s).encode() for s in tensor["data"]], dtype=np.object_)
        else:
            x = np.asarray(tensor["data"], dtype=V2_NP[tensor["datatype"]])
        return self.runner.preprocess(x.reshape(tensor["shape"]))

    def batch(self, inputs: list[Any]) -> list[Any]:
        return inputs

    def predict(self, x: list[Any]) -> list[np.ndarray]:
        return self.runner.predict(x)

    def unbatch(self, output: list[np.ndarray]) -> list[np.ndarray]:
        return output

    def encode_response(self, output: np.ndarray) -> dict[str, Any]:
        return {
            "model_name": self.key,
            "outputs": [
                {
                    "name": self.mspec.output_name,
                    "datatype": "FP32",
                    "shape": list(output.shape),
                    "data": output.reshape(-1).tolist(),
                }
            ],
        }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, choices=sorted(models.SPECS))
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--port", required=True, type=int)
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--batch-timeout-ms", type=float, default=2.0)
    a = p.parse_args()
    torch.set_num_threads(1)
    api = V2API(
        a.model,
        a.workdir,
        max_batch_size=a.max_batch_size,
        batch_timeout=a.batch_timeout_ms / 1000.0,
        api_path=f"/v2/models/{a.model}/infer",
    )
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(
        host="127.0.0.1",
        port=a.port,
        num_api_servers=1,
        log_level="warning",
        generate_client_file=False,
    )


if __name__ == "__main__":
    main()
