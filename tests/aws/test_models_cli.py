"""`fermion models push / ls / pull` end to end against a moto server process."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from fermion.cli.app import app
from fermion.runtime_images.server.storage import sha256_of
from fermion.stacks import model_push

runner = CliRunner()

ENVIRONMENT = """\
# A test environment: the comments, order and quoting below must survive --set-version.
config:
  aws:region: us-east-1
  fermion:environment:
    storage:
      bucket: {bucket}   # the model store
      force_destroy: true
    node_pools:
      - name: cpu
        shape: cpu.small
        size: {{min: 0, max: 8}}
    services:
      - name: embed
        shape: cpu.small
        model:
          format: torchscript # how to load it
          version: "1"
        inputs: ["input__0:FP32:-1,4"]
        replicas: {{min: 0, max: 2}}
      - name: tiny
        shape: cpu.small
      - name: flow
        shape: cpu.small
        model: {{format: torchscript}}
        inputs: ["input__0:FP32:-1,4"]
"""


@pytest.fixture
def store(s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A bucket of its own and a stack folder whose `dev` environment names it."""
    monkeypatch.setenv("FERMION_UPLOAD_STATE_DIR", str(tmp_path / "open-uploads"))
    bucket = f"models-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.dev.yaml").write_text(ENVIRONMENT.format(bucket=bucket))
    return bucket, stacks


def models(stacks: Path, *args: str) -> Result:
    return runner.invoke(app, ["models", *args, "--stacks-dir", str(stacks)])


def pushed(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "tokenizer").mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"weights" * 10_000)
    (folder / "handler.py").write_text("class Handler: ...\n")
    (folder / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    return folder


def objects(s3: Any, bucket: str, prefix: str) -> dict[str, Any]:
    answer = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {item["Key"]: item for item in answer.get("Contents", [])}


def test_push_a_folder_publishes_it_with_a_manifest(
    s3: Any, store: tuple[str, Path], tmp_path: Path
) -> None:
    bucket, stacks = store
    folder = model_folder(tmp_path)
    answer = pushed(models(stacks, "push", "dev", "embed", str(folder), "--json"))
    assert answer["uri"] == f"s3://{bucket}/embed/1/"
    assert (answer["files"], answer["sent_files"], answer["already_published"]) == (3, 3, False)
    keys = set(objects(s3, bucket, "embed/1/"))
    assert keys == {
        "embed/1/model.pt",
        "embed/1/handler.py",
        "embed/1/tokenizer/vocab.txt",
        "embed/1/manifest.json",
    }
    manifest = json.loads(s3.get_object(Bucket=bucket, Key="embed/1/manifest.json")["Body"].read())
    assert manifest["files"]["model.pt"] == {
        "sha256": sha256_of(folder / "model.pt"),
        "size": 70_000,
    }
    head = s3.head_object(Bucket=bucket, Key="embed/1/model.pt")
    assert head["Metadata"]["sha256"] == sha256_of(folder / "model.pt")


def test_a_rerun_sends_nothing(store: tuple[str, Path], tmp_path: Path) -> None:
    _, stacks = store
    folder = model_folder(tmp_path)
    pushed(models(stacks, "push", "dev", "embed", str(folder), "--json"))
    again = pushed(models(stacks, "push", "dev", "embed", str(folder), "--json"))
    assert (again["already_published"], again["sent_files"], again["sent_bytes"]) == (True, 0, 0)
    said = models(stacks, "push", "dev", "embed", str(folder))
    assert said.exit_code == 0
    assert "nothing was sent" in said.stdout


def test_push_a_single_file_under_another_version(
    s3: Any, store: tuple[str, Path], tmp_path: Path
) -> None:
    bucket, stacks = store
    model = tmp_path / "model.pt"
    model.write_bytes(b"x" * 1000)
    answer = pushed(models(stacks, "push", "dev", "tiny", str(model), "--version", "v2", "--json"))
    assert answer["uri"] == f"s3://{bucket}/tiny/v2/"
    assert set(objects(s3, bucket, "tiny/")) == {"tiny/v2/model.pt", "tiny/v2/manifest.json"}


def test_an_interrupted_push_is_unpublished_and_resumes(
    s3: Any, store: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket, stacks = store
    folder = model_folder(tmp_path)
    real = model_push._upload_one
    calls: list[str] = []

    def fail_on_second(*args: Any, **kwargs: Any) -> None:
        calls.append(args[2].name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(*args, **kwargs)

    monkeypatch.setattr(model_push, "_upload_one", fail_on_second)
    stopped = models(stacks, "push", "dev", "embed", str(folder), "--json")
    assert stopped.exit_code != 0
    assert "embed/1/manifest.json" not in objects(s3, bucket, "embed/1/")
    listed = pushed(models(stacks, "ls", "dev", "embed", "--json"))
    assert [(v["version"], v["published"], v["files"]) for v in listed["versions"]] == [
        ("1", False, 1)
    ]
    monkeypatch.setattr(model_push, "_upload_one", real)
    resumed = pushed(models(stacks, "push", "dev", "embed", str(folder), "--json"))
    assert (resumed["files"], resumed["sent_files"]) == (3, 2)
    assert "embed/1/manifest.json" in objects(s3, bucket, "embed/1/")


def test_a_published_version_is_kept_unless_forced(
    s3: Any, store: tuple[str, Path], tmp_path: Path
) -> None:
    bucket, stacks = store
    folder = model_folder(tmp_path)
    pushed(models(stacks, "push", "dev", "embed", str(folder), "--json"))
    (folder / "model.pt").write_bytes(b"new weights")
    (folder / "handler.py").unlink()
    refused = models(stacks, "push", "dev", "embed", str(folder))
    assert refused.exit_code == 1
    assert "already published" in refused.output and "--force" in refused.output
    forced = pushed(models(stacks, "push", "dev", "embed", str(folder), "--force", "--json"))
    assert (forced["sent_files"], forced["removed"]) == (1, ["handler.py"])
    manifest = json.loads(s3.get_object(Bucket=bucket, Key="embed/1/manifest.json")["Body"].read())
    assert set(manifest["files"]) == {"model.pt", "tokenizer/vocab.txt"}


def test_ls_shows_versions_and_what_each_service_serves(
    store: tuple[str, Path], tmp_path: Path
) -> None:
    _, stacks = store
    folder = model_folder(tmp_path)
    pushed(models(stacks, "push", "dev", "embed", str(folder), "--json"))
    pushed(models(stacks, "push", "dev", "embed", str(folder), "--version", "2", "--json"))
    listed = pushed(models(stacks, "ls", "dev", "--json"))
    rows = {(v["service"], v["version"]): v for v in listed["versions"]}
    assert rows["embed", "1"]["serving"] and rows["embed", "1"]["published"]
    assert not rows["embed", "2"]["serving"] and rows["embed", "2"]["published"]
    assert rows["embed", "2"]["files"] == 3 and rows["embed", "2"]["bytes"] > 70_000
    # tiny serves version 1, which is not in the store: it shows, as missing.
    assert rows["tiny", "1"] == {**rows["tiny", "1"], "files": 0, "published": False}
    table = models(stacks, "ls", "dev")
    assert table.exit_code == 0 and "serving" in table.stdout and "missing" in table.stdout


def test_pull_downloads_and_checks_every_file(store: tuple[str, Path], tmp_path: Path) -> None:
    _, stacks = store
    folder = model_folder(tmp_path)
    pushed(models(stacks, "push", "dev", "embed", str(folder), "--json"))
    dest = tmp_path / "pulled"
    answer = pushed(models(stacks, "pull", "dev", "embed", str(dest), "--json"))
    assert set(answer["files"]) == {"model.pt", "handler.py", "tokenizer/vocab.txt"}
    for name in answer["files"]:
        assert (dest / name).read_bytes() == (folder / name).read_bytes()
    assert (dest / "manifest.json").is_file()
    again = models(stacks, "pull", "dev", "embed", str(dest))
    assert again.exit_code == 1 and "not an empty folder" in again.output


def test_a_corrupted_object_is_named_and_not_kept(
    s3: Any, store: tuple[str, Path], tmp_path: Path
) -> None:
    bucket, stacks = store
    pushed(models(stacks, "push", "dev", "embed", str(model_folder(tmp_path)), "--json"))
    s3.put_object(Bucket=bucket, Key="embed/1/tokenizer/vocab.txt", Body=b"a\nc\n")
    dest = tmp_path / "pulled"
    result = models(stacks, "pull", "dev", "embed", str(dest))
    assert result.exit_code == 1
    assert "tokenizer/vocab.txt" in result.output and "does not match" in result.output
    assert "Traceback" not in result.output
    assert not dest.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pulled")]


def test_pull_of_an_unpublished_version_names_it(store: tuple[str, Path], tmp_path: Path) -> None:
    bucket, stacks = store
    result = models(stacks, "pull", "dev", "embed", str(tmp_path / "x"), "--version", "9")
    assert result.exit_code == 1
    assert f"s3://{bucket}/embed/9/" in result.output and "not published" in result.output


def test_set_version_changes_only_that_value(store: tuple[str, Path], tmp_path: Path) -> None:
    _, stacks = store
    stack_file = stacks / "Pulumi.dev.yaml"
    before = stack_file.read_text()
    folder = model_folder(tmp_path)
    args = ("push", "dev", "embed", str(folder), "--version", "2025-06.1", "--set-version")
    result = models(stacks, *args)
    assert result.exit_code == 0, result.output
    assert stack_file.read_text() == before.replace('version: "1"', 'version: "2025-06.1"')
    listed = pushed(models(stacks, "ls", "dev", "embed", "--json"))
    assert [v["version"] for v in listed["versions"] if v["serving"]] == ["2025-06.1"]


def test_bad_input_is_a_clear_error(store: tuple[str, Path], tmp_path: Path) -> None:
    _, stacks = store
    (tmp_path / "empty").mkdir()
    cases = {
        ("push", "dev", "embed", str(tmp_path / "nope")): "does not exist",
        ("push", "dev", "embed", str(tmp_path / "empty")): "holds no files",
        ("push", "dev", "ghost", str(tmp_path)): "has no service 'ghost'",
        ("ls", "dev", "--bucket", "no-such-bucket-here"): "'no-such-bucket-here' does not exist",
        ("push", "dev", "embed", str(tmp_path), "--version", "bad/name"): "not a version name",
    }
    for args, message in cases.items():
        result = models(stacks, *args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_a_large_file_goes_up_in_parallel_parts(
    s3: Any, store: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fermion.stacks import model_store_access

    bucket, stacks = store
    monkeypatch.setattr(model_store_access, "_PART_BYTES", 5 << 20)  # S3's smallest part
    model = tmp_path / "big.pt"
    model.write_bytes(bytes(range(256)) * (11 << 12))  # 11 MiB: three parts
    pushed(models(stacks, "push", "dev", "embed", str(model), "--json"))
    head = s3.head_object(Bucket=bucket, Key="embed/1/big.pt")
    assert head["ETag"].strip('"').endswith("-3")
    assert head["Metadata"]["sha256"] == sha256_of(model)
    dest = tmp_path / "pulled"
    pushed(models(stacks, "pull", "dev", "embed", str(dest), "--json"))
    assert sha256_of(dest / "big.pt") == sha256_of(model)


def test_missing_credentials_say_how_to_configure_them(
    store: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, stacks = store
    empty = tmp_path / "empty"
    empty.write_text("")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = models(stacks, "ls", "dev")
    assert result.exit_code == 1
    assert "none were found" in result.output and "aws configure" in result.output
    assert "Traceback" not in result.output


def test_a_manifest_that_cannot_be_read_is_named_and_force_replaces_it(
    s3: Any, store: tuple[str, Path], tmp_path: Path
) -> None:
    bucket, stacks = store
    s3.put_object(Bucket=bucket, Key="embed/1/manifest.json", Body=b"not json")
    folder = model_folder(tmp_path)
    refused = models(stacks, "push", "dev", "embed", str(folder))
    assert refused.exit_code == 1
    assert f"s3://{bucket}/embed/1/manifest.json is not a valid manifest" in refused.output
    forced = pushed(models(stacks, "push", "dev", "embed", str(folder), "--force", "--json"))
    assert forced["sent_files"] == 3
    pushed(models(stacks, "pull", "dev", "embed", str(tmp_path / "pulled"), "--json"))


def _without_bucket(stacks: Path) -> None:
    path = stacks / "Pulumi.dev.yaml"
    text = path.read_text()
    start = text.index("      bucket:")
    path.write_text(text[:start] + text[text.index("\n", start) + 1 :])


def test_the_bucket_comes_from_the_stack_outputs(
    store: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fermion.cli.stack_target as stack_target

    bucket, stacks = store
    _without_bucket(stacks)

    @dataclass
    class Output:
        value: object
        secret: bool = False

    @dataclass
    class Stack:
        def outputs(self) -> dict[str, Output]:
            return {"bucket": Output(bucket)}

    @dataclass
    class Opened:
        stack: Stack

    monkeypatch.setattr(stack_target, "open_environment", lambda *a, **k: Opened(Stack()))
    listed = pushed(models(stacks, "ls", "dev", "--json"))
    assert listed["bucket"] == bucket


def test_an_unnamed_bucket_without_a_stack_asks_for_bucket(
    store: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, stacks = store
    _without_bucket(stacks)
    monkeypatch.setenv("PATH", "/nonexistent")  # no Pulumi CLI: the outputs cannot be read
    result = models(stacks, "ls", "dev")
    assert result.exit_code == 1
    assert "does not name its model bucket" in result.output
    assert "its stack's outputs cannot be read" in result.output and "--bucket" in result.output


def test_a_large_file_stopped_half_way_sends_only_its_missing_parts(
    s3: Any, store: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fermion.stacks import model_store_access, resumable_upload

    bucket, stacks = store
    monkeypatch.setattr(model_store_access, "_PART_BYTES", 5 << 20)
    monkeypatch.setattr(model_store_access, "_CONCURRENCY", 1)
    model = tmp_path / "big.pt"
    model.write_bytes(bytes(range(256)) * (11 << 12))  # 11 MiB: parts of 5, 5 and 1 MiB
    real = resumable_upload._send_part
    sent: list[int] = []

    def stop_at_the_second_part(*args: Any) -> Any:
        if args[3] == 2 and not sent:
            sent.append(2)
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(resumable_upload, "_send_part", stop_at_the_second_part)
    stopped = models(stacks, "push", "dev", "embed", str(model), "--json")
    assert stopped.exit_code != 0
    assert "embed/1/manifest.json" not in objects(s3, bucket, "embed/1/")
    (upload,) = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    held = s3.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])["Parts"]
    assert 2 not in {part["PartNumber"] for part in held} and held
    resumed = pushed(models(stacks, "push", "dev", "embed", str(model), "--json"))
    # What S3 held went no second time: part 2, and whatever else had not landed, went now.
    assert resumed["sent_bytes"] == (11 << 20) - sum(part["Size"] for part in held)
    assert resumed["sent_files"] == 1
    dest = tmp_path / "pulled"
    pushed(models(stacks, "pull", "dev", "embed", str(dest), "--json"))
    assert sha256_of(dest / "big.pt") == sha256_of(model)
