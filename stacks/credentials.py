"""AWS credentials, checked before a stack operation hands them to Pulumi's AWS provider.

One STS GetCallerIdentity call tells whether the credentials boto3 finds (the chain the provider
reads too: environment, profile, SSO, instance role) are there and accepted. It runs with short
timeouts and no retries: without the check, a missing or expired credential would surface only
minutes into `pulumi up`, as a provider error deep in its log. The errors, and what they say to
do, are the ones every AWS call in fermion raises (`fermion.stacks.aws_errors`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fermion.stacks.aws_errors import AwsUnreachableError, aws_errors
from fermion.stacks.aws_lookups import Aws

if TYPE_CHECKING:
    from fermion.stacks.aws_lookups import Identity

__all__ = ["DEFAULT_TIMEOUT_S", "require_aws_credentials"]

DEFAULT_TIMEOUT_S = 5.0
"""How long to wait for STS to connect, and then to answer."""


def require_aws_credentials(region: str, timeout_s: float | None = None) -> Identity:
    """Who the credentials boto3 finds for `region` belong to. AwsCredentialsError when there
    are none or AWS rejects them; AwsUnreachableError when STS does not answer within
    `timeout_s` (default DEFAULT_TIMEOUT_S)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    if timeout_s is None:
        timeout_s = DEFAULT_TIMEOUT_S
    config = Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"max_attempts": 1, "mode": "standard"},
    )
    with aws_errors(region, every=True):
        try:
            session = boto3.session.Session(region_name=region)
            sts = session.client("sts", config=config)
            return Aws(region, session, clients={"sts": sts}).identity()
        except (ConnectTimeoutError, ReadTimeoutError) as exc:
            endpoint = str(exc.kwargs.get("endpoint_url", "STS"))
            raise AwsUnreachableError(f"{endpoint} (no answer within {timeout_s:g} s)") from None
