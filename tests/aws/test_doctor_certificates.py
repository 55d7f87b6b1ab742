"""`fermion doctor`'s certificate check for public services, against a real moto server: the
certificates are self-signed ones imported into moto's ACM, as a user imports their own."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fermion.environments.stack_files import load_environment
from fermion.stacks.aws_lookups import Aws, Certificate
from fermion.stacks.doctor import Check, _certificates

from .support import aws, write_env

__all__ = ["aws"]

REGION = "us-west-2"


def _import(*names: str) -> str:
    """A self-signed certificate for `names`, imported into ACM; its ARN."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    answer = boto3.client("acm", region_name=REGION).import_certificate(
        Certificate=cert.public_bytes(serialization.Encoding.PEM),
        PrivateKey=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return str(answer["CertificateArn"])


def _checks(tmp_path: Path, arn: str, hostname: str = "embed.ml.example.com") -> list[Check]:
    write_env(
        tmp_path,
        "pub",
        REGION,
        {
            "cluster": {"load_balancer_controller": True},
            "node_pools": [{"name": "cpu", "shape": "cpu.large"}],
            "services": [
                {
                    "name": "embed",
                    "shape": "cpu.large",
                    "model": {"format": "export"},
                    "public": True,
                    "hostname": hostname,
                    "certificate_arn": arn,
                }
            ],
        },
    )
    return list(_certificates(Aws(REGION), load_environment("pub", tmp_path)))


def test_an_issued_certificate_for_the_hostname_passes(aws: Any, tmp_path: Path) -> None:
    arn = _import("embed.ml.example.com")
    (check,) = _checks(tmp_path, arn)
    assert check.status == "pass", check
    assert "embed.ml.example.com is covered" in check.detail


def test_a_wildcard_certificate_covers_one_label(aws: Any, tmp_path: Path) -> None:
    arn = _import("*.ml.example.com")
    assert _checks(tmp_path, arn)[0].status == "pass"


def test_a_certificate_for_another_name_fails_naming_both(aws: Any, tmp_path: Path) -> None:
    arn = _import("other.example.com")
    (check,) = _checks(tmp_path, arn)
    assert check.status == "fail"
    assert "covers other.example.com, not embed.ml.example.com" in check.detail
    assert check.fix is not None and "*.ml.example.com" in check.fix


def test_a_missing_certificate_fails_with_how_to_request_one(aws: Any, tmp_path: Path) -> None:
    arn = f"arn:aws:acm:{REGION}:123456789012:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789"
    (check,) = _checks(tmp_path, arn)
    assert check.status == "fail"
    assert f"no certificate {arn} in {REGION}" in check.detail
    assert check.fix is not None and "aws acm request-certificate" in check.fix


@pytest.mark.parametrize(
    ("names", "host", "covered"),
    [
        (("a.example.com",), "a.example.com", True),
        (("*.example.com",), "a.example.com", True),
        (("*.example.com",), "a.b.example.com", False),
        (("*.example.com",), "example.com", False),
    ],
)
def test_wildcards_match_exactly_one_label(
    names: tuple[str, ...], host: str, covered: bool
) -> None:
    assert Certificate("ISSUED", names).covers(host) is covered


def test_a_certificate_still_pending_validation_fails(aws: Any, tmp_path: Path) -> None:
    acm = boto3.client("acm", region_name=REGION)
    arn = acm.request_certificate(DomainName="embed.ml.example.com", ValidationMethod="DNS")[
        "CertificateArn"
    ]
    (check,) = _checks(tmp_path, arn)
    assert check.status == "fail"
    assert "is PENDING_VALIDATION, not ISSUED" in check.detail
