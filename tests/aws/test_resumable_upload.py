"""Large files go up in parts that outlive an interruption, against a real moto server."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from fermion.stacks.resumable_upload import upload_in_parts

PART = 5 << 20  # S3's smallest part
METADATA = {"sha256": "x"}


class Counting:
    """The S3 client, counting upload_part calls; it stops (as Ctrl-C would) at call `stop`."""

    def __init__(self, client: Any, stop: int | None = None) -> None:
        self.client = client
        self.stop = stop
        self.parts: list[int] = []

    def upload_part(self, **kwargs: Any) -> Any:
        if self.stop is not None and len(self.parts) + 1 == self.stop:
            raise KeyboardInterrupt
        self.parts.append(int(kwargs["PartNumber"]))
        return self.client.upload_part(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"up-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _file(tmp_path: Path, seed: int = 1, parts: float = 3.5) -> tuple[Path, str]:
    path = tmp_path / f"model-{seed}.bin"
    block = hashlib.sha256(str(seed).encode()).digest() * (1 << 15)  # 1 MiB
    path.write_bytes((block * int(parts * 5 + 1))[: int(parts * PART)])
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def _send(client: Any, bucket: str, path: Path, sha: str, state: Path) -> int:
    return upload_in_parts(
        client, bucket, "m/1/model.bin", path, sha, METADATA,
        part_bytes=PART, concurrency=1, folder=state,
    )  # fmt: skip


def _stored(s3: Any, bucket: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key="m/1/model.bin")["Body"].read())


def test_a_stopped_upload_goes_on_with_only_the_missing_parts(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    path, sha = _file(tmp_path)
    state = tmp_path / "state"
    stopped = Counting(s3, stop=3)
    with pytest.raises(KeyboardInterrupt):
        _send(stopped, bucket, path, sha, state)
    assert stopped.parts == [1, 2]
    assert len(list(state.iterdir())) == 1  # the open upload is remembered
    assert len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1
    resumed = Counting(s3)
    sent = _send(resumed, bucket, path, sha, state)
    assert resumed.parts == [3, 4]
    assert sent == path.stat().st_size - 2 * PART
    assert _stored(s3, bucket) == path.read_bytes()
    head = s3.head_object(Bucket=bucket, Key="m/1/model.bin")
    assert head["Metadata"] == METADATA and head["ETag"].strip('"').endswith("-4")
    assert list(state.iterdir()) == []


def test_a_changed_file_starts_over(s3: Any, bucket: str, tmp_path: Path) -> None:
    path, sha = _file(tmp_path)
    state = tmp_path / "state"
    with pytest.raises(KeyboardInterrupt):
        _send(Counting(s3, stop=3), bucket, path, sha, state)
    other, other_sha = _file(tmp_path, seed=2)
    path.write_bytes(other.read_bytes())
    again = Counting(s3)
    _send(again, bucket, path, other_sha, state)
    assert again.parts == [1, 2, 3, 4]
    assert _stored(s3, bucket) == other.read_bytes()
    # The upload of the older copy was dropped, not left to linger.
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_an_upload_s3_no_longer_knows_starts_over(s3: Any, bucket: str, tmp_path: Path) -> None:
    path, sha = _file(tmp_path)
    state = tmp_path / "state"
    with pytest.raises(KeyboardInterrupt):
        _send(Counting(s3, stop=2), bucket, path, sha, state)
    (upload,) = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    again = Counting(s3)
    _send(again, bucket, path, sha, state)
    assert again.parts == [1, 2, 3, 4]
    assert _stored(s3, bucket) == path.read_bytes()


def test_a_part_that_does_not_match_the_file_is_sent_again(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    path, sha = _file(tmp_path)
    state = tmp_path / "state"
    with pytest.raises(KeyboardInterrupt):
        _send(Counting(s3, stop=3), bucket, path, sha, state)
    (upload,) = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    s3.upload_part(
        Bucket=bucket,
        Key=upload["Key"],
        UploadId=upload["UploadId"],
        PartNumber=2,
        Body=b"\0" * PART,
        ChecksumAlgorithm="SHA256",
    )
    again = Counting(s3)
    _send(again, bucket, path, sha, state)
    assert again.parts == [2, 3, 4]
    assert _stored(s3, bucket) == path.read_bytes()


@pytest.mark.parametrize(
    ("listed", "same"),
    [
        ({"ChecksumSHA256": "sum-of-these", "ETag": '"x"'}, True),
        ({"ChecksumSHA256": "another-sum", "ETag": '"x"'}, False),
        # Without a checksum, the ETag is the MD5 of the bytes (not with SSE-KMS: sent again).
        ({"ETag": f'"{hashlib.md5(b"abc", usedforsecurity=False).hexdigest()}"'}, True),
        ({"ETag": '"3f2a-kms-etag"'}, False),
    ],
)
def test_a_part_is_kept_only_when_s3_vouches_for_its_bytes(listed: Any, same: bool) -> None:
    from fermion.stacks.resumable_upload import _same

    assert _same(listed, b"abc", "sum-of-these") is same
