"""KServe's own V2 client against fermion's server: JSON and binary tensors, unmodified.

Run with the peers' venv, which has kserve installed (bench/serving/setup.sh makes it):

    bench/serving/.venv-peers/bin/python bench/serving/peers/kserve_client_check.py \
        http://127.0.0.1:8080 mlp 256

It sends one [2, WIDTH] FP32 tensor as JSON and once as binary data, checks the answer's shape,
and prints what came back. Exit code 0 when both work.
"""

from __future__ import annotations

import asyncio
import sys

import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def check(base_url: str, model: str, width: int) -> None:
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))
    x = np.arange(2 * width, dtype=np.float32).reshape(2, width) / (2 * width)
    try:
        for binary in (False, True):
            tensor = InferInput(name="input__0", shape=[2, width], datatype="FP32")
            tensor.set_data_from_numpy(x, binary_data=binary)
            request = InferRequest(
                model_name=model,
                infer_inputs=[tensor],
                request_id=f"kserve-{binary}",
                parameters={"binary_data_output": binary},
            )
            response = await client.infer(base_url, request, model_name=model)
            output = response.outputs[0].as_numpy()
            if output.shape[0] != 2:
                raise SystemExit(f"expected 2 rows back, got shape {list(output.shape)}")
            kind = "binary" if binary else "JSON"
            print(f"{kind}: {response.outputs[0].name} {output.dtype} {list(output.shape)} ok")
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(check(sys.argv[1], sys.argv[2], int(sys.argv[3])))
