"""One benchmark model behind NVIDIA Triton through PyTriton 0.7.0 (Triton's C++ HTTP front and
dynamic batcher; the model runs in this Python process).

Triton takes the V2 request, JSON or binary tensors, on `/v2/models/NAME/infer` and batches up
to 32 samples, waiting at most 2 ms; `infer` runs the batch through the same `models.Runner`
every server uses. HTTP only (gRPC and metrics off), one model instance.

PyTriton's bundled Python backend must load this interpreter's libpython, not the system's; on
these machines it otherwise fails with `'_thread.RLock' object has no attribute
'_recursion_count'`. So the interpreter's own library folder goes first on LD_LIBRARY_PATH for the
Triton server process.

    python pytriton_server.py --model mlp --workdir DIR --port 8080
"""

from __future__ import annotations

import argparse
import os
import sys
import sysconfig
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
_libdir = sysconfig.get_config_var("LIBDIR")
if _libdir:
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (_libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p
    )

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import models  # noqa: E402
from pytriton.decorators import batch  # noqa: E402
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor  # noqa: E402
from pytriton.triton import Triton, TritonConfig  # noqa: E402

MAX_BATCH_SIZE = 32
MAX_DELAY_US = 2000


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, choices=("mlp", "cnn"))
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--port", required=True, type=int)
    a, _ = p.parse_known_args()
    torch.set_num_threads(1)
    spec = models.SPECS[a.model]
    runner = models.Runner(a.model, a.workdir)

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        x = inputs[spec.input_name]
        # One sample per request; the batch dimension is the requests Triton put together.
        ys = runner.predict([runner.preprocess(x)])
        return {spec.output_name: ys[0].astype(np.float32)}

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=a.port,
        allow_grpc=False,
        allow_metrics=False,
        log_verbose=0,
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name=a.model,
            infer_func=infer,
            inputs=[Tensor(name=spec.input_name, dtype=np.float32, shape=spec.sample_shape[1:])],
            outputs=[Tensor(name=spec.output_name, dtype=np.float32, shape=spec.output_shape[1:])],
            config=ModelConfig(
                max_batch_size=MAX_BATCH_SIZE,
                batcher=DynamicBatcher(max_queue_delay_microseconds=MAX_DELAY_US),
            ),
            strict=False,
        )
        triton.serve()


if __name__ == "__main__":
    main()
