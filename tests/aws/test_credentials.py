"""The AWS credential check that runs before a stack operation, against a real moto server over
HTTP (one that accepts any key, and one that enforces IAM authentication) and with none at all."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fermion.stacks.aws_errors import AwsCredentialsError, AwsUnreachableError
from fermion.stacks.credentials import require_aws_credentials

from ..runtime.conftest import free_port
from .conftest import start_moto

AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@pytest.fixture
def no_aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No credentials anywhere boto3 looks, and no waiting on the instance metadata service."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


@pytest.fixture(scope="module")
def strict_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server that checks every request's credentials, as AWS does."""
    process, port = start_moto(
        tmp_path_factory.mktemp("strict-moto") / "moto.log",
        {"INITIAL_NO_AUTH_ACTION_COUNT": "0"},
    )
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


def test_accepted_credentials_name_the_account(
    no_aws: Path, moto: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in moto.items():
        monkeypatch.setenv(key, value)
    identity = require_aws_credentials("us-west-2")
    assert identity.account == "123456789012"
    assert identity.arn.startswith("arn:aws:sts::123456789012:")


def test_rejected_credentials_say_why_and_how_to_configure_them(
    no_aws: Path, strict_moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", strict_moto)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(AwsCredentialsError) as caught:
        require_aws_credentials("us-west-2")
    message = str(caught.value)
    assert "AWS did not accept them (InvalidClientTokenId:" in message
    assert "`aws configure`" in message


def test_no_credentials_say_how_to_configure_them(no_aws: Path) -> None:
    started = time.monotonic()
    with pytest.raises(AwsCredentialsError) as caught:
        require_aws_credentials("us-west-2")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert message.startswith("AWS credentials: none were found")
    for fix in ("`aws configure`", "`aws sso login`", "AWS_PROFILE", "AWS_ACCESS_KEY_ID"):
        assert fix in message


def test_a_profile_that_does_not_exist_is_named(
    no_aws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "platform")
    with pytest.raises(AwsCredentialsError, match=r"profile \(platform\) could not be found"):
        require_aws_credentials("us-west-2")


def test_an_sso_profile_never_logged_in_says_aws_sso_login(
    no_aws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (no_aws / "config").write_text(
        "[profile platform]\n"
        "sso_session = corp\n"
        "sso_account_id = 123456789012\n"
        "sso_role_name = Admin\n"
        "region = us-west-2\n"
        "[sso-session corp]\n"
        "sso_start_url = https://corp.awsapps.com/start\n"
        "sso_region = us-west-2\n"
    )
    monkeypatch.setenv("AWS_PROFILE", "platform")
    monkeypatch.setenv("HOME", str(no_aws))
    with pytest.raises(AwsCredentialsError) as caught:
        require_aws_credentials("us-west-2")
    assert "SSO session has expired or was never started" in str(caught.value)
    assert "`aws sso login`" in str(caught.value)


def test_an_sts_that_does_not_answer_is_reported_within_the_timeout(
    no_aws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A listener that accepts the connection and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
        started = time.monotonic()
        with pytest.raises(AwsUnreachableError, match="no answer within 1 s"):
            require_aws_credentials("us-west-2", timeout_s=1)
        assert time.monotonic() - started < 10


def test_an_sts_no_one_listens_on_is_reported_at_once(
    no_aws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    started = time.monotonic()
    with pytest.raises(AwsUnreachableError, match="cannot reach AWS at http://127"):
        require_aws_credentials("us-west-2", timeout_s=1)
    assert time.monotonic() - started < 10
