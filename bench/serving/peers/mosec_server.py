"""One benchmark model behind mosec (Rust HTTP front, Python worker, batching in Rust).

The worker takes the V2 JSON body on the route fermion answers, `/v2/models/NAME/infer`:
`deserialize` parses one request's body, mosec fills a batch of up to 32 in its Rust front
(waiting at most 2 ms), `forward` runs the batch through the same `models.Runner` every server
uses, and `serialize` writes each answer in V2 shape. One worker process; readiness is `GET /`.

    python mosec_server.py --model mlp --workdir DIR --port 8080
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import models
from mosec import Server, Worker
from mosec.errors import ValidationError

MAX_BATCH_SIZE = 32
MAX_WAIT_MS = 2


# mosec starts its workers as new processes that import this file again: they read the model
# from the environment, which main() sets.
MODEL_ENV, WORKDIR_ENV = "BENCH_MOSEC_MODEL", "BENCH_MOSEC_WORKDIR"


class V2Worker(Worker):
    """The V2 JSON request in, the model's batch, the V2 JSON answer out."""

    def __init__(self) -> None:
        super().__init__()
        import torch

        torch.set_num_threads(1)
        self.key = os.environ[MODEL_ENV]
        self.spec = models.SPECS[self.key]
        self.runner = models.Runner(self.key, Path(os.environ[WORKDIR_ENV]))

    def deserialize(self, data: bytes) -> Any:
        try:
            tensor = orjson.loads(data)["inputs"][0]
            x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as e:
            raise ValidationError(f"not a V2 request: {e}") from e
        return self.runner.preprocess(x)

    def forward(self, data: list[Any]) -> list[Any]:
        return self.runner.predict(data)

    def serialize(self, data: Any) -> bytes:
        y = np.asarray(data, dtype=np.float32)
        return orjson.dumps(
            {
                "model_name": self.key,
                "model_version": "1",
                "outputs": [
                    {
                        "name": self.spec.output_name,
                        "datatype": "FP32",
                        "shape": list(y.shape),
                        "data": y.reshape(-1),
                    }
                ],
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, choices=("mlp", "cnn"))
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--port", required=True, type=int)
    a, _ = p.parse_known_args()
    os.environ[MODEL_ENV], os.environ[WORKDIR_ENV] = a.model, str(a.workdir.resolve())
    # mosec reads its own flags from sys.argv: give it only those it knows.
    sys.argv = [sys.argv[0], "--address", "127.0.0.1", "--port", str(a.port)]
    sys.argv += ["--log-level", "warning"]
    server = Server()
    server.append_worker(
        V2Worker,
        num=1,
        max_batch_size=MAX_BATCH_SIZE,
        max_wait_time=MAX_WAIT_MS,
        route=f"/v2/models/{a.model}/infer",
    )
    server.run()


if __name__ == "__main__":
    main()
