"""How fast a model loads from the node's model cache, against the same load from S3: fermion's
loader (`fetch`, as a pod runs it) with FERMION_MODEL_CACHE_URL set, one moto server and one
node cache server (`node_cache.py`, its own process) on 127.0.0.1.

    .venv/bin/python bench/models/node_cache.py                  # 1 GiB, 3 rounds
    .venv/bin/python bench/models/node_cache.py --mib 256 --rounds 1

Each round is two pods on one node, each with an empty /tmp: the first loads from S3 and offers
every file to the cache from a thread of its own (its load does not wait for that; the time
until the cache holds the file is measured apart), the second loads from the cache. Each round
starts with an empty cache. Both check every file's SHA-256 against the manifest inside
their time. Writes bench/models/NODE_CACHE.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from run import BUCKET, FILE, HERE, KEY_PREFIX, _free_port, _start_moto, _upload  # type: ignore[import-not-found]

FIRST = "first pod: from S3"
OFFERED = "first pod's start until the cache holds the file"
SECOND = "second pod: from the cache"


def _start_cache(port: int, folder: Path, max_bytes: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "server.node_cache", "--host", "127.0.0.1",
             "--port", str(port), "--dir", str(folder), "--max-bytes", str(max_bytes)],
            cwd=HERE.parent.parent / "runtime_images",
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the node cache did not start:\n{log.read_text()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="model size in MiB")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.mib << 20
    moto_port, cache_port = _free_port(), _free_port()
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "FERMION_MODEL_CACHE_URL": f"http://127.0.0.1:{cache_port}",
        }
    )
    from fermion.runtime_images.server import storage

    seconds: dict[str, list[float]] = {
        FIRST: [],
        OFFERED: [],
        SECOND: [],
    }
    sources: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fermion-node-cache-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        moto = _start_moto(moto_port, scratch / "moto.log")
        cache = None
        try:
            sha256 = _upload(size, scratch)
            for round_ in range(args.rounds):
                blobs = scratch / f"blobs-{round_}"
                cache = _start_cache(cache_port, blobs, 2 * size, scratch / "cache.log")
                for name in (FIRST, SECOND):
                    pod = scratch / f"{round_}-{len(sources)}"
                    started = time.perf_counter()
                    fetched = storage.fetch(f"s3://{BUCKET}/{KEY_PREFIX}", pod)
                    elapsed = time.perf_counter() - started
                    if not fetched.offers_done(timeout=600):
                        raise SystemExit(f"{name}: the offer to the cache did not finish")
                    if name == FIRST:
                        seconds[OFFERED].append(time.perf_counter() - started)
                    if storage.sha256_of(fetched.path / FILE) != sha256:
                        raise SystemExit(f"{name}: a different file")
                    source = ", ".join(sorted(fetched.by_source))
                    sources.append(source)
                    seconds[name].append(elapsed)
                    print(f"round {round_ + 1} {name}: {elapsed:.2f} s ({source})")
                    shutil.rmtree(pod)
                cache.terminate()
                cache.wait(timeout=10)
                cache = None
                shutil.rmtree(blobs)
        finally:
            if cache is not None:
                cache.kill()
            moto.terminate()
            moto.wait(timeout=10)
    if sources[1::2] != ["node_cache"] * args.rounds or sources[0::2] != ["s3"] * args.rounds:
        raise SystemExit(f"loads came from {sources}, not S3 then the cache")
    _write(args, seconds)


def _write(args: argparse.Namespace, seconds: dict[str, list[float]]) -> None:
    mib = args.mib
    medians = {name: statistics.median(times) for name, times in seconds.items()}
    rows = ["| load | median s | MiB/s | rounds (s) |", "| --- | ---: | ---: | --- |"]
    for name, median in medians.items():
        rounds = " / ".join(f"{t:.2f}" for t in seconds[name])
        rows.append(f"| {name} | {median:.2f} | {mib / median:,.0f} | {rounds} |")
    ratio = medians[FIRST] / medians[SECOND]
    text = f"""# Loading a model from the node's cache (moto and the cache on loopback)

`.venv/bin/python bench/models/node_cache.py --mib {mib} --rounds {args.rounds}`: one {mib} MiB
file with its manifest in one moto server process, and a node cache server (`python -m
server.node_cache`, its own process) on 127.0.0.1. Each round, two pods with empty folders load
it with fermion's loader and FERMION_MODEL_CACHE_URL set: the first from S3, the second from the
cache. The first offers the file to the cache from a thread of its own and does not wait for
it; the second row is the time from the first pod's start until the cache held the file. Both
pods check the file's SHA-256 against the manifest inside their time. Machine:
{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load average
before the run {os.getloadavg()[0]:.2f}.

{chr(10).join(rows)}

The second pod on a node loads {ratio:.1f} times as fast as the first, with no GET of the
model's bytes from S3. Against S3 itself the first load is bound by the network and the second
by the node's disk, so the ratio here, where S3 is moto on the same two cores, says little about
a cluster.
"""
    (HERE / "NODE_CACHE.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
