from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any

import pulumi
import pytest

from fermion.components.model_store import (
    InvalidServiceNameError,
    ModelStore,
    ModelStoreArgs,
    s3_read_policy,
    s3_uri_read_policy,
)
from fermion.environments.errors import FermionError

from .conftest import Recorder, resolve, settle

ACCOUNT = "123456789012"
KEY_ARN = f"arn:aws:kms:us-west-2:{ACCOUNT}:key/0f3c6a2e-1b7d-4c9a-9f0e-5d2b8a7c6e41"
KEY_ID = "0f3c6a2e-1b7d-4c9a-9f0e-5d2b8a7c6e41"
BUCKET = "aws:s3/bucket:Bucket"
POLICY = "aws:s3/bucketPolicy:BucketPolicy"
CALLER_IDENTITY = "aws:index/getCallerIdentity:getCallerIdentity"


def _mock_aws(mocks: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers like AWS would: a bucket's ARN follows its name, auto-names end in a suffix."""
    mocks.outputs["aws:kms/key:Key"] = {"arn": KEY_ARN, "keyId": KEY_ID}
    mocks.call_results[CALLER_IDENTITY] = {
        "accountId": ACCOUNT,
        "arn": f"arn:aws:iam::{ACCOUNT}:user/ci",
        "id": ACCOUNT,
        "userId": "AIDAEXAMPLE",
    }
    record = mocks.new_resource

    def new_resource(args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        resource_id, outputs = record(args)
        if args.typ == BUCKET:
            bucket = outputs.get("bucket") or f"{outputs['bucketPrefix']}20261122abcdef"
            outputs = {**outputs, "bucket": bucket, "arn": f"arn:aws:s3:::{bucket}"}
        return resource_id, outputs

    monkeypatch.setattr(mocks, "new_resource", new_resource)


def _store(
    mocks: Recorder, monkeypatch: pytest.MonkeyPatch, **overrides: Any
) -> tuple[ModelStore, str]:
    _mock_aws(mocks, monkeypatch)
    values: dict[str, Any] = {"bucket_name": "acme-models", "tags": {"team": "ml"}}
    values.update(overrides)
    store = ModelStore("models", ModelStoreArgs(**values))
    arn: str = resolve(store.bucket_arn)
    settle()
    return store, arn


def _inputs(mocks: Recorder, typ: str, name: str = "models") -> dict[str, Any]:
    (resource,) = [r for r in mocks.of_type(typ) if r.name == name]
    return dict(resource.inputs)


def _policy(mocks: Recorder, name: str = "models") -> dict[str, Any]:
    document: dict[str, Any] = json.loads(_inputs(mocks, POLICY, name)["policy"])
    return document


def _allows(policy: dict[str, Any], action: str, resource: str, prefix: str | None = None) -> bool:
    """Whether an identity policy of Allow statements (as read_only_policy writes) permits a call.

    Handles what those statements use: exact actions, '*' in resources, and StringLike on
    s3:prefix; a request without a prefix fails such a condition, as it does in IAM.
    """
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow" or action not in statement["Action"]:
            continue
        if not any(fnmatchcase(resource, pattern) for pattern in statement["Resource"]):
            continue
        like = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
        if like is not None and (prefix is None or not any(fnmatchcase(prefix, p) for p in like)):
            continue
        return True
    return False


def test_the_bucket_is_named_private_and_owned_by_its_account(
    mocks: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, arn = _store(mocks, monkeypatch)
    assert resolve(store.bucket_name) == "acme-models"
    assert arn == "arn:aws:s3:::acme-models"
    assert resolve(store.kms_key_arn) == KEY_ARN
    bucket = _inputs(mocks, BUCKET)
    assert bucket["bucket"] == "acme-models"
    assert "bucketPrefix" not in bucket
    assert bucket["forceDestroy"] is False
    assert bucket["tags"] == {"team": "ml"}
    block = _inputs(mocks, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert block["bucket"] == "models-id"
    for flag in (
        "blockPublicAcls",
        "blockPublicPolicy",
        "ignorePublicAcls",
        "restrictPublicBuckets",
    ):
        assert block[flag] is True, flag
    ownership = _inputs(mocks, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership["bucket"] == "models-id"
    assert ownership["rule"] == {"objectOwnership": "BucketOwnerEnforced"}


def test_without_a_name_the_bucket_is_named_from_a_prefix(
    mocks: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = _store(mocks, monkeypatch, bucket_name=None, force_destroy=True)
    bucket = _inputs(mocks, BUCKET)
    assert "bucket" not in bucket
    assert bucket["bucketPrefix"] == "fermion-models-"
    assert bucket["forceDestroy"] is True
    assert resolve(store.bucket_name).startswith("fermion-models-")
    alias = _inputs(mocks, "aws:kms/alias:Alias", "models-key")
    assert alias["namePrefix"] == "alias/fermion/fermion-models-"
    assert "name" not in alias


def test_objects_are_encrypted_with_the_stores_own_rotating_key(
    mocks: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    _store(mocks, monkeypatch, bucket_name="acme.models")
    encryption = _inputs(
        mocks,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    )
    assert encryption["bucket"] == "models-id"
    (rule,) = encryption["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "aws:kms",
        "kmsMasterKeyId": KEY_ARN,
    }
    assert rule["bucketKeyEnabled"] is True
    (key,) = mocks.of_type("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    assert 7 <= key.inputs["deletionWindowInDays"] <= 30
    alias = _inputs(mocks, "aws:kms/alias:Alias", "models-key")
    # Alias names cannot hold the bucket name's dots.
    assert alias["name"] == "alias/fermion/acme-models"
    assert alias["targetKeyId"] == KEY_ID


def test_versioning_is_on_by_default(mocks: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    _store(mocks, monkeypatch)
    versioning = _inputs(mocks, "aws:s3/bucketVersioning:BucketVersioning")
    assert versioning["bucket"] == "models-id"
    assert versioning["versioningConfiguration"] == {"status": "Enabled"}


def test_versioning_can_be_left_off(mocks: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = _store(mocks, monkeypatch, versioning=False)
    assert mocks.of_type("aws:s3/bucketVersioning:BucketVersioning") == []
    assert store.versioning is None


@pytest.mark.parametrize("days", [30, 7, 365])
def test_noncurrent_versions_expire_after_the_given_days(
    mocks: Recorder, monkeypatch: pytest.MonkeyPatch, days: int
) -> None:
    _store(mocks, monkeypatch, noncurrent_version_days=days)
    lifecycle = _inputs(mocks, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    assert lifecycle["bucket"] == "models-id"
    rules = {rule["id"]: rule for rule in lifecycle["rules"]}
    assert all(rule["status"] == "Enabled" and rule["filter"] == {} for rule in rules.values())
    noncurrent = rules["expire-noncurrent-versions"]
    assert noncurrent["noncurrentVersionExpiration"] == {"noncurrentDays": days}
    assert "days" not in noncurrent.get("expiration", {})
    uploads = rules["abort-incomplete-multipart-uploads"]
    assert uploads["abortIncompleteMultipartUpload"]["daysAfterInitiation"] >= 1
    # No rule ever expires a current version: a model in use must not disappear.
    assert not any("days" in rule.get("expiration", {}) for rule in rules.values())


def test_the_bucket_policy_refuses_requests_without_tls(
    mocks: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, arn = _store(mocks, monkeypatch)
    assert _inputs(mocks, POLICY)["bucket"] == "models-id"
    policy = _policy(mocks)
    assert policy["Version"] == "2012-10-17"
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Action"] == "s3:*"
    assert sorted(statement["Resource"]) == [arn, f"{arn}/*"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_access_logging_is_off_unless_asked(
    mocks: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = _store(mocks, monkeypatch)
    assert [r.name for r in mocks.of_type(BUCKET)] == ["models"]
    assert mocks.of_type("aws:s3/bucketLogging:BucketLogging") == []
    assert store.log_bucket is None
    assert mocks.calls == []


def test_access_logs_go_to_a_private_encrypted_bucket(
    mocks: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, arn = _store(mocks, monkeypatch, access_logging=True)
    assert store.log_bucket is not None
    log_arn = resolve(store.log_bucket.arn)
    log_bucket = _inputs(mocks, BUCKET, "models-logs")
    assert log_bucket["bucketPrefix"] == "acme-models-logs-"
    assert len(log_bucket["bucketPrefix"]) <= 37
    logging = _inputs(mocks, "aws:s3/bucketLogging:BucketLogging")
    assert logging["bucket"] == "models-id"
    assert logging["targetBucket"] == "models-logs-id"
    prefix = logging["targetPrefix"]

    block = _inputs(mocks, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "models-logs")
    assert block["bucket"] == "models-logs-id"
    for flag in (
        "blockPublicAcls",
        "blockPublicPolicy",
        "ignorePublicAcls",
        "restrictPublicBuckets",
    ):
        assert block[flag] is True, flag
    ownership = _inputs(
        mocks, "aws:s3/bucketOwnershipControls:BucketOwnershipControls", "models-logs"
    )
    assert ownership["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    encryption = _inputs(
        mocks,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "models-logs",
    )
    # S3 delivers access logs only to buckets encrypted with S3-managed keys.
    assert encryption["rules"][0]["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "AES256"
    }

    statements = {s["Sid"]: s for s in _policy(mocks, "models-logs")["Statement"]}
    deny = statements["DenyInsecureTransport"]
    assert sorted(deny["Resource"]) == [log_arn, f"{log_arn}/*"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    deliver = statements["DeliverAccessLogs"]
    assert deliver["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert deliver["Action"] == "s3:PutObject"
    assert deliver["Resource"] == f"{log_arn}/{prefix}*"
    assert deliver["Condition"] == {
        "ArnLike": {"aws:SourceArn": arn},
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
    }
    assert len(statements) == 2


def test_read_only_policy_reads_one_services_models_and_nothing_else(
    mocks: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, arn = _store(mocks, monkeypatch)
    policy = json.loads(resolve(store.read_only_policy("classifier")))
    assert policy["Version"] == "2012-10-17"
    granted = sorted(
        (action, resource)
        for statement in policy["Statement"]
        for action in statement["Action"]
        for resource in statement["Resource"]
    )
    assert granted == [
        ("kms:Decrypt", KEY_ARN),
        ("s3:GetObject", f"{arn}/classifier/*"),
        ("s3:ListBucket", arn),
    ]
    assert all(statement["Effect"] == "Allow" for statement in policy["Statement"])

    assert _allows(policy, "s3:GetObject", f"{arn}/classifier/3/model.pt")
    assert not _allows(policy, "s3:GetObject", f"{arn}/detector/1/model.pt")
    assert not _allows(policy, "s3:GetObject", f"{arn}/classifier-v2/1/model.pt")
    assert not _allows(policy, "s3:PutObject", f"{arn}/classifier/3/model.pt")
    assert not _allows(policy, "s3:DeleteObject", f"{arn}/classifier/3/model.pt")
    assert _allows(policy, "s3:ListBucket", arn, prefix="classifier/")
    assert _allows(policy, "s3:ListBucket", arn, prefix="classifier/3/")
    assert not _allows(policy, "s3:ListBucket", arn, prefix="detector/")
    assert not _allows(policy, "s3:ListBucket", arn, prefix="classifier")
    assert not _allows(policy, "s3:ListBucket", arn, prefix="")
    assert not _allows(policy, "s3:ListBucket", arn)
    assert _allows(policy, "kms:Decrypt", KEY_ARN)
    assert not _allows(policy, "kms:Encrypt", KEY_ARN)


def test_each_service_gets_its_own_prefix(mocks: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    store, arn = _store(mocks, monkeypatch)
    detector = json.loads(resolve(store.read_only_policy("detector")))
    assert _allows(detector, "s3:GetObject", f"{arn}/detector/1/model.pt")
    assert not _allows(detector, "s3:GetObject", f"{arn}/classifier/1/model.pt")


@pytest.mark.parametrize(
    "service",
    ["", "Classifier", "my_model", "-classifier", "classifier-", "a/b", "../x", "a.b", "x" * 64],
)
def test_a_service_name_that_is_not_a_dns_label_is_refused(
    mocks: Recorder, monkeypatch: pytest.MonkeyPatch, service: str
) -> None:
    store, _ = _store(mocks, monkeypatch)
    with pytest.raises(InvalidServiceNameError) as caught:
        store.read_only_policy(service)
    assert isinstance(caught.value, FermionError)
    assert caught.value.service == service
    message = str(caught.value)
    assert repr(service) in message
    assert "DNS label" in message
    assert "lowercase letters, digits and '-'" in message


def test_a_63_character_service_name_is_accepted(
    mocks: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, arn = _store(mocks, monkeypatch)
    service = "a" * 62 + "1"
    policy = json.loads(resolve(store.read_only_policy(service)))
    assert _allows(policy, "s3:GetObject", f"{arn}/{service}/1/model.pt")


def test_the_store_and_a_model_outside_it_share_one_read_policy(
    mocks: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, arn = _store(mocks, monkeypatch)
    assert resolve(store.read_only_policy("embed")) == s3_read_policy(arn, "embed", KEY_ARN)
    outside = json.loads(s3_uri_read_policy("s3://artifacts/embed/3/"))
    assert outside == json.loads(s3_read_policy("arn:aws:s3:::artifacts", "embed/3"))
    assert _allows(outside, "s3:GetObject", "arn:aws:s3:::artifacts/embed/3/model.pt")
    assert not _allows(outside, "s3:GetObject", "arn:aws:s3:::artifacts/embed/4/model.pt")
    assert _allows(outside, "s3:ListBucket", "arn:aws:s3:::artifacts", prefix="embed/3/")
    assert not _allows(outside, "s3:ListBucket", "arn:aws:s3:::artifacts", prefix="embed/")
    # Without a key, nothing may be decrypted.
    assert not any("kms:Decrypt" in s["Action"] for s in outside["Statement"])


def test_a_whole_bucket_is_read_when_the_uri_has_no_prefix() -> None:
    statements = json.loads(s3_uri_read_policy("s3://artifacts"))["Statement"]
    assert statements[0]["Resource"] == ["arn:aws:s3:::artifacts/*"]
    assert "Condition" not in statements[1]


def test_children_are_parented_to_the_component(
    mocks: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = _store(mocks, monkeypatch, access_logging=True)
    assert store.log_bucket is not None
    assert store.logging is not None
    children = [
        store.bucket,
        store.key,
        store.key_alias,
        store.public_access_block,
        store.encryption,
        store.lifecycle,
        store.policy,
        store.log_bucket,
        store.logging,
    ]
    assert store.versioning is not None
    children.append(store.versioning)
    for child in children:
        assert "fermion:index:ModelStore$" in resolve(child.urn)
    assert resolve(store.bucket.urn).endswith(
        "fermion:index:ModelStore$aws:s3/bucket:Bucket::models"
    )
    assert resolve(store.urn).endswith("fermion:index:ModelStore::models")
