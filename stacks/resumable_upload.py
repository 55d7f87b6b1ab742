"""One large file sent to S3 in parts that outlive an interruption.

boto3's transfer manager aborts its multipart upload when it fails or is interrupted, so a
re-run starts the file over. A model's weights can be many gigabytes: here the upload is left
open instead, and what it needs to go on (bucket, key, upload id, the file's size and SHA-256,
the part size) is kept in a small state file on this machine. A re-run with the same file lists
the parts S3 holds, keeps each whose SHA-256 matches the same bytes of the file, and sends only
the rest. A file that changed, or an upload S3 no longer knows, starts over (the old upload is
aborted; the bucket's lifecycle rule removes any that are left).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fermion.stacks.aws_errors import aws_errors, error_code

__all__ = ["UploadState", "state_folder", "upload_in_parts"]

STATE_FOLDER_VARIABLE = "FERMION_UPLOAD_STATE_DIR"
# What S3 answers for an upload that was completed, aborted or expired.
_GONE = ("NoSuchUpload", "404")


@dataclass(frozen=True)
class UploadState:
    """An open multipart upload of one file, as a re-run needs it to go on."""

    bucket: str
    key: str
    upload_id: str
    size: int
    sha256: str
    part_bytes: int


def state_folder() -> Path:
    """Where open uploads are remembered: $FERMION_UPLOAD_STATE_DIR, else the user's cache."""
    given = os.environ.get(STATE_FOLDER_VARIABLE)
    if given:
        return Path(given)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "fermion" / "uploads"


def _state_file(folder: Path, bucket: str, key: str) -> Path:
    return folder / f"{hashlib.sha256(f'{bucket}/{key}'.encode()).hexdigest()[:32]}.json"


def _load(path: Path) -> UploadState | None:
    try:
        return UploadState(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None  # none, or not one of ours: start over


def _save(path: Path, state: UploadState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(state)), encoding="utf-8")


def _part_range(number: int, size: int, part_bytes: int) -> tuple[int, int]:
    start = (number - 1) * part_bytes
    return start, min(part_bytes, size - start)


def _read(path: Path, start: int, length: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(start)
        return handle.read(length)


def _sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _kept_parts(client: Any, state: UploadState, path: Path) -> dict[int, dict[str, str]] | None:
    """The parts S3 holds for the upload that match the file, by number; None when S3 no
    longer knows the upload."""
    from botocore.exceptions import ClientError

    kept: dict[int, dict[str, str]] = {}
    marker = 0
    while True:
        try:
            page = client.list_parts(
                Bucket=state.bucket,
                Key=state.key,
                UploadId=state.upload_id,
                PartNumberMarker=marker,
            )
        except ClientError as exc:
            if error_code(exc) in _GONE:
                return None
            with aws_errors(every=True):
                raise
        for part in page.get("Parts", []):
            number = int(part["PartNumber"])
            start, length = _part_range(number, state.size, state.part_bytes)
            if int(part["Size"]) != length:
                continue
            data = _read(path, start, length)
            checksum = _sha256_b64(data)
            if _same(part, data, checksum):
                kept[number] = {"ETag": str(part["ETag"]), "ChecksumSHA256": checksum}
        if not page.get("IsTruncated"):
            return kept
        marker = int(page["NextPartNumberMarker"])


def _same(part: Mapping[str, Any], data: bytes, checksum: str) -> bool:
    """Whether a part S3 holds is these bytes: by its SHA-256 where S3 reports one, else by its
    ETag, which is the bytes' MD5 unless the bucket encrypts with KMS (then it is sent again)."""
    reported = part.get("ChecksumSHA256")
    if reported is not None:
        return bool(reported == checksum)
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    return str(part.get("ETag", "")).strip('"') == md5


def upload_in_parts(
    client: Any,
    bucket: str,
    key: str,
    path: Path,
    sha256: str,
    metadata: Mapping[str, str],
    *,
    part_bytes: int,
    concurrency: int,
    advance: Callable[[int], None] | None = None,
    folder: Path | None = None,
) -> int:
    """Send `path` to `bucket`/`key` in parts of `part_bytes`, `concurrency` at a time, going on
    with an upload a stopped run left open. Returns the bytes this run sent. `advance` hears of
    the bytes already there at the start, then of each part as it lands."""
    size = path.stat().st_size
    state_path = _state_file(state_folder() if folder is None else folder, bucket, key)
    state = _load(state_path)
    kept: dict[int, dict[str, str]] = {}
    if state is not None and (state.size, state.sha256, state.part_bytes) == (
        size,
        sha256,
        part_bytes,
    ):
        found = _kept_parts(client, state, path)
        if found is None:
            state = None
        else:
            kept = found
    elif state is not None:
        _abort(client, state)
        state = None
    if state is None:
        with aws_errors(every=True):
            opened = client.create_multipart_upload(
                Bucket=bucket, Key=key, Metadata=dict(metadata), ChecksumAlgorithm="SHA256"
            )
        state = UploadState(bucket, key, str(opened["UploadId"]), size, sha256, part_bytes)
        _save(state_path, state)

    count = max(1, math.ceil(size / part_bytes))
    todo = [n for n in range(1, count + 1) if n not in kept]
    if advance is not None:
        advance(sum(_part_range(n, size, part_bytes)[1] for n in kept))
    sent = 0
    pool = ThreadPoolExecutor(max_workers=concurrency)
    futures: dict[Future[dict[str, str]], int] = {}
    try:
        for number in todo:
            futures[pool.submit(_send_part, client, state, path, number, advance)] = number
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            kept[futures[future]] = future.result()  # raises the first failure
            sent += _part_range(futures[future], size, part_bytes)[1]
    except BaseException:
        # Ctrl-C or a failure: the upload stays open, and the next run goes on from here.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    parts = [{"PartNumber": n, **kept[n]} for n in sorted(kept)]
    with aws_errors(every=True):
        client.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=state.upload_id,
            MultipartUpload={"Parts": parts},
        )
    state_path.unlink(missing_ok=True)
    return sent


def _send_part(
    client: Any,
    state: UploadState,
    path: Path,
    number: int,
    advance: Callable[[int], None] | None,
) -> dict[str, str]:
    start, length = _part_range(number, state.size, state.part_bytes)
    data = _read(path, start, length)
    checksum = _sha256_b64(data)
    with aws_errors(every=True):
        answer = client.upload_part(
            Bucket=state.bucket,
            Key=state.key,
            UploadId=state.upload_id,
            PartNumber=number,
            Body=data,
            ChecksumSHA256=checksum,
        )
    if advance is not None:
        advance(length)
    return {"ETag": str(answer["ETag"]), "ChecksumSHA256": checksum}


def _abort(client: Any, state: UploadState) -> None:
    """Drop an upload of an older copy of the file; one S3 no longer knows is gone already."""
    from botocore.exceptions import ClientError

    try:
        client.abort_multipart_upload(Bucket=state.bucket, Key=state.key, UploadId=state.upload_id)
    except ClientError as exc:
        if error_code(exc) not in ("NoSuchUpload", "404"):
            raise
