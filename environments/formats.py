"""The formats of single values in an environment: names, CIDRs, bucket and repository names,
label keys, tensor specs. Each check raises ValueError with a message that says what is allowed.
"""

from __future__ import annotations

import difflib
import ipaddress
import re

from fermion.runtime_images.server.config import parse_tensor_spec as parse_tensor_spec

# Names become Kubernetes object names and AWS resource name prefixes: DNS-1035 labels, kept short
# enough that suffixes such as "-predictor-7d9f" still fit in 63 characters.
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
NAME_MAX = 40
AWS_REGIONS = (
    "af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
    "ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3",
    "ap-southeast-4", "ap-southeast-5", "ap-southeast-6", "ap-southeast-7", "ca-central-1",
    "ca-west-1", "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2",
    "eu-west-1", "eu-west-2", "eu-west-3", "il-central-1", "me-central-1", "me-south-1",
    "mx-central-1", "sa-east-1", "us-east-1", "us-east-2", "us-gov-east-1", "us-gov-west-1",
    "us-west-1", "us-west-2",
)  # fmt: skip

_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_ECR_REPOSITORY = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IAM_PRINCIPAL = re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:(role|user)/[\w+=,.@/-]{1,512}$")
_ACM_CERTIFICATE = re.compile(
    r"^arn:aws(-[a-z]+)*:acm:(?P<region>[a-z]{2}(-[a-z]+)+-\d):\d{12}:certificate/[0-9a-f-]{36}$"
)


def bucket_name_problem(name: str) -> str | None:
    """Why `name` is not a legal S3 bucket name, or None when it is."""
    if not 3 <= len(name) <= 63:
        return "must be 3 to 63 characters long"
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", name):
        return (
            "may hold only lowercase letters, digits, dots and hyphens, and must begin and end "
            "with a letter or digit"
        )
    if ".." in name or ".-" in name or "-." in name:
        return "must not hold two dots in a row, or a dot beside a hyphen"
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        return "must not look like an IP address"
    if name.startswith(_BUCKET_RESERVED_PREFIXES):
        return f"must not begin with {', '.join(_BUCKET_RESERVED_PREFIXES)}"
    if name.endswith(_BUCKET_RESERVED_SUFFIXES):
        return f"must not end with {', '.join(_BUCKET_RESERVED_SUFFIXES)}"
    return None


def legal_bucket(name: str) -> str:
    problem = bucket_name_problem(name)
    if problem is not None:
        raise ValueError(f"not a legal S3 bucket name: it {problem}")
    return name


def legal_region(name: str) -> str:
    if name not in AWS_REGIONS:
        close = difflib.get_close_matches(name, AWS_REGIONS, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ValueError(
            f"not an AWS region; {hint}use a region code such as us-east-1, us-west-2 or eu-west-1"
        )
    return name


def ecr_repository(name: str) -> str:
    if not 2 <= len(name) <= 256 or not _ECR_REPOSITORY.match(name):
        raise ValueError(
            "not a legal ECR repository name: use 2-256 lowercase letters, digits and "
            "'.', '_', '-' separators, with '/' between path parts (e.g. fermion/runtime)"
        )
    return name


def s3_uri(uri: str) -> str:
    if not uri.startswith("s3://"):
        raise ValueError(
            "a deployed service loads its model from S3: write s3://BUCKET/PREFIX/, or leave "
            "uri out to use s3://<models bucket>/<service>/<version>/"
        )
    bucket = uri[len("s3://") :].split("/", 1)[0]
    problem = bucket_name_problem(bucket)
    if problem is not None:
        raise ValueError(
            f"bucket {bucket!r} in the URI is not a legal S3 bucket name: it {problem}"
        )
    return uri


def handler_reference(ref: str) -> str:
    module, sep, cls = ref.partition(":")
    if not sep or not module or not cls.isidentifier():
        raise ValueError(
            "write the handler as MODULE:CLASS or FILE.py:CLASS, e.g. handler.py:EmbeddingHandler"
        )
    return ref


def tensor_spec(text: str) -> str:
    # The serving runtime's own parser, so the spec accepts exactly what the server will.
    parse_tensor_spec(text)
    return text


def labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
            raise ValueError(f"label key {key!r} has a prefix that is not a DNS subdomain")
        if not _LABEL_NAME.match(name):
            raise ValueError(
                f"label key {key!r}: the name part must be 1-63 letters, digits, '-', '_' or '.', "
                "beginning and ending with a letter or digit"
            )
        if prefix.endswith(("kubernetes.io", "k8s.io")):
            raise ValueError(
                f"label key {key!r} is in a prefix the kubelet reserves; use your own prefix"
            )
        if prefix.startswith("fermion.dev") or prefix.endswith(".fermion.dev"):
            raise ValueError(f"label key {key!r} is in the fermion.dev prefix, which fermion sets")
        if not _LABEL_VALUE.match(value):
            raise ValueError(
                f"label value {value!r} for {key!r} must be at most 63 letters, digits, '-', '_' "
                "or '.', beginning and ending with a letter or digit"
            )
    return labels


def env_vars(env: dict[str, str]) -> dict[str, str]:
    for key in env:
        if not _ENV_VAR.match(key):
            raise ValueError(f"environment variable name {key!r} must match [A-Za-z_][A-Za-z0-9_]*")
    return env


def iam_principal(arn: str) -> str:
    if not _IAM_PRINCIPAL.match(arn):
        raise ValueError(
            "not an IAM role or user ARN, e.g. arn:aws:iam::123456789012:role/platform-admins"
        )
    return arn


def hostname(name: str) -> str:
    """A fully qualified DNS name that a TLS certificate can cover (no wildcard, no port)."""
    if len(name) > 253 or "." not in name or not _DNS_SUBDOMAIN.match(name):
        raise ValueError(
            "not a DNS name: use lowercase letters, digits, hyphens and dots, with at least one "
            "dot, e.g. embed.ml.example.com"
        )
    if any(len(label) > 63 for label in name.split(".")):
        raise ValueError("a DNS label (the part between dots) is at most 63 characters")
    return name


def acm_certificate(arn: str) -> str:
    if not _ACM_CERTIFICATE.match(arn):
        raise ValueError(
            "not an ACM certificate ARN, e.g. arn:aws:acm:us-east-1:123456789012:certificate/"
            "0a1b2c3d-4e5f-6789-abcd-ef0123456789"
        )
    return arn


def acm_certificate_region(arn: str) -> str:
    """The region an ACM certificate ARN (already checked) lives in."""
    found = _ACM_CERTIFICATE.match(arn)
    return found.group("region") if found is not None else ""


def cidr_text(value: object) -> object:
    # ipaddress would take an integer (or a YAML `true`) as an address; a CIDR must be written out.
    if not isinstance(value, str | ipaddress.IPv4Network):
        raise ValueError("write a CIDR block as text, e.g. 10.0.0.0/16")
    return value


_PIP_REQUIREMENT = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?((==|>=|<=|~=|!=|<|>)[A-Za-z0-9.*+!_-]+"
    r"(,(==|>=|<=|~=|!=|<|>)[A-Za-z0-9.*+!_-]+)*)?$"
)


def pip_requirement(text: str) -> str:
    if not _PIP_REQUIREMENT.match(text):
        raise ValueError(
            "write a package as NAME, NAME==VERSION or NAME[extra]>=VERSION, e.g. "
            "transformers==5.23.0"
        )
    return text
