"""`fermion bootstrap` against a real moto server: what it makes, that a second run changes
nothing, and that it keeps its hands off buckets and keys it did not make."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from fermion.cli import app
from fermion.environments.errors import FermionError
from fermion.stacks.backend import load_backend
from fermion.stacks.bootstrap import STATE_TAG, bootstrap

from .support import Stubbed, aws, stubbed_aws, unique, write_env

__all__ = ["aws"]

runner = CliRunner()
ACCOUNT = "123456789012"  # moto's


def _run(folder: Path, env: str, *extra: str) -> Any:
    return runner.invoke(app, ["bootstrap", env, "--stacks-dir", str(folder), *extra])


def test_makes_a_private_versioned_encrypted_tls_only_bucket_and_a_rotating_key(
    aws: dict[str, str], tmp_path: Path
) -> None:
    # eu-west-3 is this test's alone, so the default bucket name is free.
    write_env(tmp_path, "paris", "eu-west-3")
    result = _run(tmp_path, "paris", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    bucket = f"fermion-state-{ACCOUNT}-eu-west-3"
    assert report["backend"]["url"] == f"s3://{bucket}?region=eu-west-3"
    alias = f"alias/{bucket}"
    assert report["backend"]["secrets_provider"] == f"awskms://{alias}?region=eu-west-3"
    assert report["changed"] is True

    s3 = boto3.client("s3", region_name="eu-west-3")
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-3"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    kms = boto3.client("kms", region_name="eu-west-3")
    key = kms.describe_key(KeyId=alias)["KeyMetadata"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": key["Arn"],
    }
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is True
    (statement,) = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    rules = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    tags = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    assert {"Key": STATE_TAG, "Value": ACCOUNT} in tags

    record = load_backend("paris", tmp_path)
    assert record is not None
    assert (record.bucket, record.kms_key_id, record.kms_alias) == (bucket, key["KeyId"], alias)
    assert report["record"] == str(tmp_path / ".fermion" / "backend.json")

    again = _run(tmp_path, "paris")
    assert again.exit_code == 0, again.output
    assert "nothing to change" in again.stdout
    assert "created" not in again.stdout and "changed" not in again.stdout
    third = json.loads(_run(tmp_path, "paris", "--json").stdout)
    assert third["changed"] is False
    assert {step["action"] for step in third["steps"]} == {"unchanged"}


def test_refuses_a_bucket_it_did_not_make_unless_adopted(
    aws: dict[str, str], tmp_path: Path
) -> None:
    write_env(tmp_path, "dev", "us-west-2")
    name = unique("theirs")
    s3 = boto3.client("s3", region_name="us-west-2")
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})

    refused = _run(tmp_path, "dev", "--bucket", name)
    assert refused.exit_code == 1
    assert "--adopt" in refused.stderr and name in refused.stderr
    assert "Traceback" not in refused.output
    assert _tags(s3, name) == []  # left as it was
    assert load_backend("dev", tmp_path) is None
    # Refused before anything was written: not even the key was made.
    kms = boto3.client("kms", region_name="us-west-2")
    aliases = [a["AliasName"] for a in kms.list_aliases()["Aliases"]]
    assert f"alias/{name}" not in aliases

    adopted = _run(tmp_path, "dev", "--bucket", name, "--adopt", "--json")
    assert adopted.exit_code == 0, adopted.output
    steps = {s["subject"]: s["action"] for s in json.loads(adopted.stdout)["steps"]}
    assert steps[f"bucket {name}"] == "changed"
    assert {"Key": STATE_TAG, "Value": ACCOUNT} in _tags(s3, name)
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"

    # Adopted once, it is fermion's: no --adopt needed, and nothing left to change.
    again = json.loads(_run(tmp_path, "dev", "--bucket", name, "--json").stdout)
    assert again["changed"] is False


def test_refuses_a_key_alias_it_did_not_make(aws: dict[str, str], tmp_path: Path) -> None:
    write_env(tmp_path, "dev", "us-west-2")
    name = unique("keyed")
    kms = boto3.client("kms", region_name="us-west-2")
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName=f"alias/{name}", TargetKeyId=key["KeyId"])
    refused = _run(tmp_path, "dev", "--bucket", name)
    assert refused.exit_code == 1
    assert "KMS key" in refused.stderr and "--adopt" in refused.stderr


def test_keeps_an_adopted_buckets_own_policy_statements(
    aws: dict[str, str], tmp_path: Path
) -> None:
    name = unique("with-policy")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=name)
    theirs = {
        "Sid": "TheirOwn",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:DeleteBucket",
        "Resource": f"arn:aws:s3:::{name}",
    }
    s3.put_bucket_policy(
        Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [theirs]})
    )
    bootstrap("dev", "us-east-1", tmp_path, bucket=name, adopt=True)
    statements = json.loads(s3.get_bucket_policy(Bucket=name)["Policy"])["Statement"]
    assert [s["Sid"] for s in statements] == ["TheirOwn", "DenyInsecureTransport"]


def test_a_bucket_name_owned_by_another_account_is_refused(
    aws: dict[str, str], tmp_path: Path
) -> None:
    # moto is one account, so it cannot hold another account's bucket: S3's answer to a HEAD
    # on one (403, no body) comes from botocore's Stubber, for that one call only.
    s3 = Stubbed("s3", "us-west-2").fail("head_bucket", "403", 403, "Forbidden")
    with (
        stubbed_aws("us-west-2", s3=s3) as client,
        pytest.raises(FermionError, match="belongs to another AWS account") as caught,
    ):
        bootstrap("dev", "us-west-2", tmp_path, bucket=unique("taken"), aws=client)
    assert "--bucket NAME" in str(caught.value)


def test_says_when_the_user_chose_another_backend(
    aws: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env(tmp_path, "dev", "us-west-2")
    monkeypatch.setenv("PULUMI_BACKEND_URL", "file:///somewhere")
    result = _run(tmp_path, "dev", "--bucket", unique("other"))
    assert result.exit_code == 0, result.output
    assert "PULUMI_BACKEND_URL chooses file:///somewhere" in result.stdout


def _tags(s3: Any, bucket: str) -> list[dict[str, str]]:
    try:
        return list(s3.get_bucket_tagging(Bucket=bucket)["TagSet"])
    except s3.exceptions.ClientError:
        return []
