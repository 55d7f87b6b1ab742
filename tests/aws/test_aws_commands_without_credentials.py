"""bootstrap, doctor and plan --aws run as a new user would: no credentials anywhere. Each says how
to configure them and exits 1, with no traceback. The CLI runs in a subprocess whose environment
holds no AWS variables, whose AWS config and credentials files are empty, and which may not ask
the instance metadata service, so nothing leaves the machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.stub import Stubber

from fermion.environments.errors import FermionError
from fermion.stacks.aws_errors import AwsCredentialsError, AwsUnreachableError, aws_errors
from fermion.stacks.aws_lookups import Aws

from .support import write_env


def _bare_environment(tmp_path: Path) -> dict[str, str]:
    empty = tmp_path / "empty"
    empty.write_text("")
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "PULUMI_")) and k not in ("HOME", "FERMION_STACKS_DIR")
    }
    return {
        **keep,
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.mark.parametrize(
    "command", [["bootstrap", "dev"], ["doctor", "dev"], ["plan", "dev", "--aws"]]
)
def test_says_how_to_configure_credentials(tmp_path: Path, command: list[str]) -> None:
    write_env(tmp_path / "stacks", "dev", "us-west-2")
    done = subprocess.run(
        [sys.executable, "-m", "fermion.cli", *command, "--stacks-dir", str(tmp_path / "stacks")],
        capture_output=True,
        text=True,
        env=_bare_environment(tmp_path),
        timeout=120,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert "Traceback" not in said
    assert "none were found" in said
    for way in ("aws configure", "AWS_PROFILE", "AWS_ACCESS_KEY_ID"):
        assert way in said


@pytest.mark.parametrize("code", ["InvalidClientTokenId", "ExpiredToken", "SignatureDoesNotMatch"])
def test_credentials_aws_rejects_say_so(code: str) -> None:
    # moto accepts any key, so AWS's rejection of one comes from the Stubber.
    aws = Aws("us-west-2")
    sts = aws.client("sts")
    with Stubber(sts) as stub:
        stub.add_client_error("get_caller_identity", service_error_code=code, http_status_code=403)
        with pytest.raises(
            AwsCredentialsError, match=f"AWS did not accept them \\({code}"
        ) as caught:
            aws.identity()
    message = str(caught.value)
    assert "aws configure" in message
    assert "us-west-2 is enabled" in message


def test_an_unreachable_endpoint_names_it() -> None:
    from botocore.exceptions import EndpointConnectionError

    with (
        pytest.raises(AwsUnreachableError, match=r"cannot reach AWS at http://127\.0\.0\.1:9"),
        aws_errors(),
    ):
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")


def test_other_errors_pass_through_unless_every_one_is_asked_for() -> None:
    from botocore.exceptions import ClientError

    error = ClientError({"Error": {"Code": "Throttling", "Message": "slow down"}}, "DescribeX")
    with pytest.raises(ClientError), aws_errors():
        raise error
    with (
        pytest.raises(FermionError, match="DescribeX with Throttling: slow down"),
        aws_errors(every=True),
    ):
        raise error
