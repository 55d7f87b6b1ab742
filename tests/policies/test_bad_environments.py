"""A corpus of deliberately bad environments, one violation each: `fermion plan --json` finds
exactly that violation, and exits 4 when it is mandatory. Where the spec's validator refuses
the violation first, the refusal is asserted instead (the rule stays, for stacks that use the
components directly)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from fermion.cli import app

from ..conftest import environment_data

runner = CliRunner()


def base() -> dict[str, Any]:
    """dev without its service (faster: no build context), the environment every case breaks."""
    data = environment_data("dev")
    data["services"] = []
    return data


def plan(tmp_path: Path, data: dict[str, Any], *flags: str) -> tuple[int, str]:
    document = {"config": {"aws:region": "us-west-2", "fermion:environment": data}}
    (tmp_path / "Pulumi.bad.yaml").write_text(yaml.safe_dump(document))
    result = runner.invoke(app, ["plan", "bad", "--stacks-dir", str(tmp_path), "--json", *flags])
    return result.exit_code, result.output


def breaks(path: str, value: Any, data: dict[str, Any] | None = None) -> dict[str, Any]:
    data = base() if data is None else data
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return data


def with_public_service(**changes: Any) -> dict[str, Any]:
    data = environment_data("dev")
    data["services"][0].update({"public": True, **changes})
    data["cluster"]["load_balancer_controller"] = True
    return data


CORPUS = [
    (
        breaks("storage.versioning", False),
        "s3-versioning",
        "mandatory",
        "aws:s3/bucket:Bucket::bad-models",
    ),
    (
        breaks("registry.scan_on_push", False),
        "ecr-scan-on-push",
        "mandatory",
        "Repository::bad-registry",
    ),
    (
        breaks("registry.immutable_tags", False),
        "ecr-immutable-tags",
        "mandatory",
        "Repository::bad-registry",
    ),
    (
        breaks("cluster.log_types", ["api"]),
        "eks-audit-logs",
        "mandatory",
        "aws:eks/cluster:Cluster::bad-cluster",
    ),
    (
        breaks("cluster.public_access_cidrs", ["0.0.0.0/0"]),
        "eks-public-endpoint-cidrs",
        "advisory",
        "aws:eks/cluster:Cluster::bad-cluster",
    ),
]


@pytest.mark.parametrize(("data", "policy", "level", "urn_end"), CORPUS, ids=[c[1] for c in CORPUS])
def test_each_bad_environment_gets_exactly_its_finding(
    tmp_path: Path, data: dict[str, Any], policy: str, level: str, urn_end: str
) -> None:
    code, output = plan(tmp_path, data)
    findings = json.loads(output)["findings"]
    assert [(f["policy"], f["level"]) for f in findings] == [(policy, level)], findings
    assert findings[0]["urn"].endswith(urn_end)
    assert code == (4 if level == "mandatory" else 0)


def test_no_policy_skips_the_rules(tmp_path: Path) -> None:
    code, output = plan(tmp_path, breaks("storage.versioning", False), "--no-policy")
    assert code == 0 and json.loads(output)["findings"] == []


def test_the_validator_refuses_a_public_endpoint_open_to_all(tmp_path: Path) -> None:
    code, output = plan(tmp_path, breaks("cluster.public_access_cidrs", []))
    assert code == 1
    assert "cluster.public_access_cidrs" in output


CERTIFICATE = "arn:aws:acm:us-west-2:123456789012:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789"


@pytest.mark.parametrize(
    ("changes", "path", "fragment"),
    [
        ({}, "services[0].hostname", "TLS"),
        ({"hostname": "embed.example.com"}, "services[0].certificate_arn", "TLS"),
        (
            {"hostname": "embed.example.com", "certificate_arn": CERTIFICATE, "auth": "none"},
            "services[0].auth",
            "bearer tokens",
        ),
    ],
)
def test_the_validator_refuses_a_public_service_without_tls_or_tokens(
    tmp_path: Path, changes: dict[str, Any], path: str, fragment: str
) -> None:
    # service-not-public stays for stacks that declare Ingresses or Services themselves.
    code, output = plan(tmp_path, with_public_service(**changes))
    assert code == 1
    assert path in output and fragment in output


def test_a_public_service_with_tls_and_tokens_has_no_finding(tmp_path: Path) -> None:
    data = with_public_service(hostname="embed.example.com", certificate_arn=CERTIFICATE)
    code, output = plan(tmp_path, data)
    assert code == 0 and json.loads(output)["findings"] == []


def test_an_advisory_finding_can_be_waived_with_a_reason(tmp_path: Path) -> None:
    data = breaks("cluster.public_access_cidrs", ["0.0.0.0/0"])
    reason = "the API is reached from CI runners with no fixed addresses"
    data["policy_waivers"] = [
        {"policy": "eks-public-endpoint-cidrs", "resource": "bad-cluster", "reason": reason}
    ]
    code, output = plan(tmp_path, data)
    (finding,) = json.loads(output)["findings"]
    assert finding["policy"] == "eks-public-endpoint-cidrs" and finding["waived"] == reason
    assert code == 0
    document = {"config": {"aws:region": "us-west-2", "fermion:environment": data}}
    (tmp_path / "Pulumi.bad.yaml").write_text(yaml.safe_dump(document))
    text = runner.invoke(app, ["plan", "bad", "--stacks-dir", str(tmp_path)]).stdout
    assert "waived advisory eks-public-endpoint-cidrs" in text
    assert f"waived: {reason}" in text


@pytest.mark.parametrize("command", ["plan", "validate"])
def test_a_mandatory_policy_cannot_be_waived(tmp_path: Path, command: str) -> None:
    data = breaks("storage.versioning", False)
    data["policy_waivers"] = [
        {"policy": "s3-versioning", "resource": "bad-models", "reason": "dev only"}
    ]
    document = {"config": {"aws:region": "us-west-2", "fermion:environment": data}}
    (tmp_path / "Pulumi.bad.yaml").write_text(yaml.safe_dump(document))
    result = runner.invoke(app, [command, "bad", "--stacks-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "cannot waive 's3-versioning'" in result.stderr
    assert "mandatory" in result.stderr


def test_a_waiver_of_no_such_policy_is_refused(tmp_path: Path) -> None:
    data = base()
    data["policy_waivers"] = [{"policy": "no-such-rule", "resource": "x", "reason": "y"}]
    code, output = plan(tmp_path, data)
    assert code == 1 and "no such policy" in output
