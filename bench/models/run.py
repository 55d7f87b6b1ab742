"""How fast a model loads from S3: fermion's loader against one GET, boto3's defaults and the
server's own limit, side by side in one run against one moto server on loopback.

    .venv/bin/python bench/models/run.py                 # 1 GiB, 3 rounds
    .venv/bin/python bench/models/run.py --mib 256 --rounds 1

Each round fetches the same object with every method, in turn, into a fresh folder:
- `fermion`: the server's loader (`materialize`, as a pod runs it): parallel ranged GETs, then a
  SHA-256 check of every file against the manifest, before the model may load (the check is
  inside its time; the others' bytes are checked outside theirs);
- `one GET`: a single streamed `get_object`;
- `boto3 defaults`: `download_file` with boto3's default TransferConfig;
- `boto3 CRT`: boto3's transfer manager on its CRT client (`awscrt`), made by boto3's own
  `create_transfer_manager` with `TransferConfig(preferred_transfer_client="crt")` and the same
  range size and streams as fermion's loader, then the same SHA-256 check, inside its time. boto3
  always opens the CRT client with TLS, and moto on loopback speaks plain HTTP, so the run turns
  TLS off in that one call (`_crt_probe` records what boto3's unchanged path does);
- `curl ranges`: the server's own limit, from outside Python: as many `curl` processes as
  fermion has requests in flight, each fetching one contiguous range.
Writes bench/models/RESULTS.md and results.json.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BUCKET = "bench-models"
KEY_PREFIX = "classifier/1/"
FILE = "model.bin"
# The loader's own settings, read from where it keeps them.
sys.path.insert(0, str(HERE.parent.parent))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start_moto(port: int, log: Path) -> subprocess.Popen[bytes]:
    server = Path(sys.executable).with_name("moto_server")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"moto_server did not start:\n{log.read_text()}")


def _client() -> Any:
    import boto3

    return boto3.client("s3", region_name="us-east-1")


def _upload(size: int, scratch: Path) -> str:
    """Write `size` random bytes, upload them with a manifest; return the file's SHA-256."""
    source = scratch / FILE
    digest = hashlib.sha256()
    with source.open("wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 8 << 20))
            digest.update(block)
            out.write(block)
            left -= len(block)
    client = _client()
    client.create_bucket(Bucket=BUCKET)
    client.upload_file(str(source), BUCKET, f"{KEY_PREFIX}{FILE}")
    manifest = {"files": {FILE: {"sha256": digest.hexdigest(), "size": size}}}
    client.put_object(
        Bucket=BUCKET, Key=f"{KEY_PREFIX}manifest.json", Body=json.dumps(manifest).encode()
    )
    source.unlink()
    return digest.hexdigest()


def fermion(dest: Path, endpoint: str, size: int) -> Path:
    from fermion.runtime_images.server.storage import materialize

    return materialize(f"s3://{BUCKET}/{KEY_PREFIX}", cache=dest) / FILE


def one_get(dest: Path, endpoint: str, size: int) -> Path:
    target = dest / FILE
    body = _client().get_object(Bucket=BUCKET, Key=f"{KEY_PREFIX}{FILE}")["Body"]
    with target.open("wb") as out:
        for chunk in body.iter_chunks(1 << 20):
            out.write(chunk)
    return target


def boto3_defaults(dest: Path, endpoint: str, size: int) -> Path:
    target = dest / FILE
    _client().download_file(BUCKET, f"{KEY_PREFIX}{FILE}", str(target))
    return target


def _crt_without_tls() -> None:
    """Make boto3 open its CRT client without TLS: the one change from boto3's own path."""
    import boto3.crt
    from s3transfer.crt import create_s3_crt_client  # type: ignore[import-untyped]

    def plain(session: Any, config: Any, region_name: str, cred_provider: Any) -> Any:
        return create_s3_crt_client(
            region=region_name, crt_credentials_provider=cred_provider, use_ssl=False
        )

    boto3.crt._create_crt_client = plain


def boto3_crt(dest: Path, endpoint: str, size: int) -> Path:
    from boto3.s3.transfer import TransferConfig, create_transfer_manager
    from s3transfer.crt import CRTTransferManager

    from fermion.runtime_images.server import storage

    target = dest / FILE
    config = TransferConfig(
        preferred_transfer_client="crt",
        multipart_chunksize=storage.part_bytes(size),
        max_concurrency=storage._CONCURRENCY,  # CRT: its max_request_concurrency
    )
    manager = create_transfer_manager(_client(), config)
    if not isinstance(manager, CRTTransferManager):
        raise SystemExit(f"boto3 chose {type(manager).__name__}, not its CRT transfer manager")
    with manager:
        manager.download(BUCKET, f"{KEY_PREFIX}{FILE}", str(target)).result()
    expected = json.loads(
        _client().get_object(Bucket=BUCKET, Key=f"{KEY_PREFIX}manifest.json")["Body"].read()
    )["files"][FILE]["sha256"]
    if storage.sha256_of(target) != expected:
        raise SystemExit("boto3 CRT fetched a file that does not match the manifest")
    return target


_PROBE = """
import sys
from boto3.s3.transfer import TransferConfig, create_transfer_manager
import boto3
client = boto3.client("s3", region_name="us-east-1")
manager = create_transfer_manager(client, TransferConfig(preferred_transfer_client="crt"))
print(type(manager).__name__)
try:
    manager.download(sys.argv[1], sys.argv[2], sys.argv[3]).result(timeout=60)
    print("fetched")
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
"""


def _crt_probe(scratch: Path) -> str:
    """What boto3's CRT path, unchanged, does against moto's plain HTTP: in a process of its
    own, because boto3 keeps one CRT client per process."""
    answer = subprocess.run(
        [sys.executable, "-c", _PROBE, BUCKET, f"{KEY_PREFIX}manifest.json", str(scratch / "p")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return " ".join(answer.stdout.split()) or answer.stderr.strip().splitlines()[-1]


def curl_ranges(dest: Path, endpoint: str, size: int) -> Path:
    from fermion.runtime_images.server import storage

    streams = storage._CONCURRENCY
    step = -(-size // streams)
    url = f"{endpoint}/{BUCKET}/{KEY_PREFIX}{FILE}"
    parts = []
    processes = []
    for i in range(streams):
        first, last = i * step, min(size, (i + 1) * step) - 1
        part = dest / f"part-{i:03d}"
        parts.append(part)
        processes.append(
            subprocess.Popen(
                ["curl", "-sf", "-r", f"{first}-{last}", "-o", str(part), url],
            )
        )
    if any(p.wait() != 0 for p in processes):
        raise SystemExit("a curl range request failed")
    return parts[0]  # parts stay apart: joining them is work the limit does not include


METHODS: dict[str, Callable[[Path, str, int], Path]] = {
    "fermion": fermion,
    "one GET": one_get,
    "boto3 defaults": boto3_defaults,
    "boto3 CRT": boto3_crt,
    "curl ranges": curl_ranges,
}


def _check(method: str, path: Path, dest: Path, size: int, sha256: str) -> None:
    if method == "curl ranges":
        total = sum(p.stat().st_size for p in dest.glob("part-*"))
        if total != size:
            raise SystemExit(f"curl ranges fetched {total} bytes, not {size}")
        return
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            digest.update(block)
    if path.stat().st_size != size or digest.hexdigest() != sha256:
        raise SystemExit(f"{method} fetched a different file")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="model size in MiB")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.mib << 20
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    seconds: dict[str, list[float]] = {name: [] for name in METHODS}
    with tempfile.TemporaryDirectory(prefix="fermion-models-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        moto = _start_moto(port, scratch / "moto.log")
        try:
            started = time.perf_counter()
            sha256 = _upload(size, scratch)
            print(f"uploaded {args.mib} MiB in {time.perf_counter() - started:.1f} s")
            probe = _crt_probe(scratch)
            print(f"boto3's CRT path, unchanged: {probe}")
            _crt_without_tls()
            for round_ in range(args.rounds):
                for name, method in METHODS.items():
                    dest = scratch / f"{round_}-{name.replace(' ', '-')}"
                    dest.mkdir()
                    started = time.perf_counter()
                    path = method(dest, endpoint, size)
                    elapsed = time.perf_counter() - started
                    _check(name, path, dest, size, sha256)
                    seconds[name].append(elapsed)
                    print(f"round {round_ + 1} {name}: {elapsed:.2f} s")
                    shutil.rmtree(dest)
        finally:
            moto.terminate()
            moto.wait(timeout=10)
    _write(args, seconds, probe)


def _write(args: argparse.Namespace, seconds: dict[str, list[float]], probe: str) -> None:
    from fermion.runtime_images.server import storage

    mib = args.mib
    medians = {name: statistics.median(times) for name, times in seconds.items()}
    limit = medians["curl ranges"]
    rows = [
        "| method | median s | MiB/s | of the curl limit | rounds (s) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, median in medians.items():
        rounds = " / ".join(f"{t:.2f}" for t in seconds[name])
        rows.append(
            f"| {name} | {median:.2f} | {mib / median:,.0f} | {limit / median:.0%} | {rounds} |"
        )
    fermion_vs_boto3 = medians["boto3 defaults"] / medians["fermion"]
    fermion_vs_crt = medians["boto3 CRT"] / medians["fermion"]
    crt_version = importlib.metadata.version("awscrt")
    text = f"""# Loading a model from S3 (moto on loopback)

`.venv/bin/python bench/models/run.py --mib {mib} --rounds {args.rounds}`: one {mib} MiB file
with its manifest, fetched by each method in turn, {args.rounds} rounds, from one moto server
process on 127.0.0.1. fermion's loader makes ranged GETs of
{storage.part_bytes(args.mib << 20) / (1 << 20):.1f} MiB for this file,
{storage._CONCURRENCY} in flight, and then checks the file's SHA-256 against the manifest; the
others only fetch (the benchmark checks their bytes afterwards, outside the timing), except
`boto3 CRT`: boto3's CRT transfer manager (awscrt {crt_version}) with the same range size
and streams, and the same SHA-256 check inside its time, with TLS turned off in boto3's one call
that opens the CRT client, because moto here speaks plain HTTP. `curl
ranges` is {storage._CONCURRENCY} curl processes, one contiguous range each: the server's own
limit, with no Python in the client. Machine: {platform.machine()}, {os.cpu_count()} cores,
Python {platform.python_version()}, load average before the run {os.getloadavg()[0]:.2f}.

{chr(10).join(rows)}

fermion's loader against boto3's `download_file` defaults: {fermion_vs_boto3:.2f}x as fast;
against boto3's CRT transfer manager: {fermion_vs_crt:.2f}x as fast.

boto3's CRT path unchanged, against this plain-HTTP endpoint (transfer manager, then the
outcome of fetching the manifest): `{probe}`.
"""
    (HERE / "RESULTS.md").write_text(text)
    (HERE / "results.json").write_text(
        json.dumps(
            {"mib": mib, "rounds": args.rounds, "seconds": seconds, "crt_unchanged": probe},
            indent=2,
        )
        + "\n"
    )
    print(text)


if __name__ == "__main__":
    main()
