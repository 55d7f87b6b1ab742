"""fermion's torch serving runtime: the Open Inference Protocol (KServe V2) over REST.

This package is copied into every runtime image as it is. It imports nothing from the rest of
fermion, and nothing from pulumi or typer; its dependencies are torch, numpy, orjson and uvicorn,
and pysimdjson where installed (large JSON inputs decode faster with it).
Importing the package itself loads none of them: `config` is plain Python.
"""

from __future__ import annotations

__all__: list[str] = []
