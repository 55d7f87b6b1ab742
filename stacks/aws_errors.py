"""What goes wrong when fermion asks AWS, as errors that say how to fix it.

botocore raises a dozen kinds of exception for "no credentials", "bad credentials", "no network"
and "not allowed". `aws_errors()` turns each into one of the `FermionError`s below, whose message
names the problem and the fix, so the CLI never shows a botocore traceback for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fermion.environments.errors import FermionError

__all__ = [
    "CREDENTIAL_ERROR_CODES",
    "HOW_TO_CONFIGURE",
    "AwsCredentialsError",
    "AwsError",
    "AwsPermissionError",
    "AwsRequestError",
    "AwsUnreachableError",
    "aws_errors",
    "error_code",
]

HOW_TO_CONFIGURE = (
    "Configure credentials in one of these ways: run `aws configure` (or `aws configure sso` "
    "then `aws sso login`); set AWS_PROFILE to a profile in ~/.aws/config; or set "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones). "
    "`aws sts get-caller-identity` shows whether they work"
)

# Error codes with which AWS answers a request signed with credentials it does not accept.
CREDENTIAL_ERROR_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AuthFailure",
        "InvalidToken",
    }
)
_PERMISSION_ERROR_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}
)


class AwsError(FermionError):
    """A request to AWS that failed for a reason the user can fix."""


class AwsCredentialsError(AwsError):
    """No AWS credentials were found, or AWS did not accept the ones found."""

    def __init__(self, problem: str, region: str | None = None) -> None:
        self.problem = problem
        hint = ""
        if region is not None:
            hint = (
                f" If these credentials work in other regions, check that {region} is enabled "
                "for the account."
            )
        super().__init__(f"AWS credentials: {problem}. {HOW_TO_CONFIGURE}.{hint}")


class AwsUnreachableError(AwsError):
    """AWS's endpoint could not be reached."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        super().__init__(
            f"cannot reach AWS at {endpoint}. Check the network connection and any proxy "
            "settings (HTTPS_PROXY), and that AWS_ENDPOINT_URL, when set, points at a running "
            "endpoint."
        )


class AwsPermissionError(AwsError):
    """The credentials work, but may not make this request."""

    def __init__(self, operation: str, message: str) -> None:
        self.operation = operation
        self.message = message
        super().__init__(
            f"AWS refused {operation}: {message}. Grant the caller permission for it (an IAM "
            "policy on the user or role), or use credentials that have it."
        )


class AwsRequestError(AwsError):
    """AWS refused a request for a reason fermion has no advice of its own for."""

    def __init__(self, operation: str, code: str | None, message: str) -> None:
        self.operation = operation
        self.code = code
        self.message = message
        super().__init__(
            f"AWS answered {operation} with {code or 'an error'}: {message}. Run the command "
            "again; if it fails the same way, the message above names what AWS wants changed."
        )


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, else None."""
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code is not None else None


@contextmanager
def aws_errors(region: str | None = None, *, every: bool = False) -> Iterator[None]:
    """Turn botocore's credential, network and permission errors into fermion's own. Other
    errors pass through for the caller to judge (a missing bucket is an answer, not a failure),
    unless `every` is set: then they too become an `AwsRequestError`."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
        SSOError,
        TokenRetrievalError,
    )

    try:
        yield
    except NoCredentialsError:
        raise AwsCredentialsError("none were found") from None
    except PartialCredentialsError as exc:
        raise AwsCredentialsError(f"they are incomplete ({exc})") from None
    except ProfileNotFound as exc:
        raise AwsCredentialsError(f"{exc}, which AWS_PROFILE names") from None
    except (SSOError, TokenRetrievalError) as exc:
        raise AwsCredentialsError(
            f"the SSO session has expired or was never started ({exc}); run `aws sso login`"
        ) from None
    except NoRegionError:
        raise AwsCredentialsError("no region is configured") from None
    except EndpointConnectionError as exc:
        raise AwsUnreachableError(str(exc.kwargs.get("endpoint_url", exc))) from None
    except ClientError as exc:
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", str(exc))
        if code in CREDENTIAL_ERROR_CODES:
            raise AwsCredentialsError(
                f"AWS did not accept them ({code}: {message})", region
            ) from None
        if code in _PERMISSION_ERROR_CODES:
            raise AwsPermissionError(exc.operation_name, message) from None
        if every:
            raise AwsRequestError(exc.operation_name, code, _first_line(message)) from None
        raise
    except BotoCoreError as exc:
        if every:
            raise AwsRequestError("a request", None, str(exc)) from None
        raise


def _first_line(message: str) -> str:
    # An endpoint that is not AWS (a proxy, a test server) may answer with a whole HTML page.
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[0] if lines else message
