"""`fermion plan ENV --aws` against a real moto server: the zones and offerings come from AWS, and
what moto lacks (EKS DescribeAddonVersions, answered 404 by its server) either stays an offline
assumption that says why, or, in one test, is answered by botocore's Stubber."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fermion.cli import app
from fermion.components.cluster import MANAGED_ADDONS
from fermion.environments.stack_files import load_environment
from fermion.stacks.aws_answers import aws_answers
from fermion.stacks.plan import plan_environment

from .support import Stubbed, aws, stubbed_aws, write_env

__all__ = ["aws"]

runner = CliRunner()


def _plan(folder: Path, env: str, *extra: str) -> Any:
    return runner.invoke(app, ["plan", env, "--stacks-dir", str(folder), *extra])


def _subnet_zones(document: dict[str, Any]) -> set[str]:
    return {
        r["inputs"]["availabilityZone"]
        for r in document["resources"]
        if r["type"] == "aws:ec2/subnet:Subnet"
    }


def test_zones_come_from_aws(aws: dict[str, str], tmp_path: Path) -> None:
    # moto's ap-northeast-1 has zones a, c and d: offline, the plan assumes a, b and c.
    environment = {"network": {"availability_zones": 3, "interface_endpoints": []}}
    write_env(tmp_path, "tokyo", "ap-northeast-1", environment)
    offline = json.loads(_plan(tmp_path, "tokyo", "--json").stdout)
    assert _subnet_zones(offline) == {"ap-northeast-1a", "ap-northeast-1b", "ap-northeast-1c"}

    result = _plan(tmp_path, "tokyo", "--aws", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert _subnet_zones(document) == {"ap-northeast-1a", "ap-northeast-1c", "ap-northeast-1d"}
    assert document["asked_aws"]["account"] == "123456789012"
    assert document["asked_aws"]["zones"] == "ap-northeast-1a, ap-northeast-1c, ap-northeast-1d"
    assert "offerings" in document["asked_aws"]
    # Asked, so no longer assumed; only the add-on versions, which moto cannot answer, are.
    (assumed,) = document["assumptions"]
    assert "add-on versions" in assumed and "DescribeAddonVersions" in assumed

    human = _plan(tmp_path, "tokyo", "--aws")
    assert human.exit_code == 0, human.output
    assert "AWS (account 123456789012) answered its lookups (zones, offerings)" in human.stdout
    assert "nothing was sent to AWS" not in human.stdout


def test_a_region_with_fewer_zones_than_the_network_fails_the_plan(
    aws: dict[str, str], tmp_path: Path
) -> None:
    # moto's us-west-1 has two zones; offline, every region is assumed to have six.
    write_env(tmp_path, "sf", "us-west-1", {"network": {"availability_zones": 3}})
    assert _plan(tmp_path, "sf", "--json").exit_code == 0
    result = _plan(tmp_path, "sf", "--aws")
    assert result.exit_code == 1
    assert "the region has only 2 available zones (us-west-1a, us-west-1b)" in result.stderr
    assert "Traceback" not in result.output and "destroyed" not in result.output
    # The failed plan left nothing behind in this process: the next one runs.
    assert _plan(tmp_path, "sf", "--json").exit_code == 0


def test_addon_versions_come_from_aws(aws: dict[str, str], tmp_path: Path) -> None:
    write_env(tmp_path, "dev", "us-west-2")
    spec = load_environment("dev", tmp_path)
    # moto's server has no DescribeAddonVersions: the Stubber answers it, one add-on at a time,
    # in the order the plan asks; the default version is the one marked so, not the newest.
    eks = Stubbed("eks", "us-west-2")
    for addon in MANAGED_ADDONS:
        versions = [
            {"addonVersion": f"v9-{addon}", "compatibilities": [{"clusterVersion": "1.34"}]},
            {
                "addonVersion": f"v1-{addon}",
                "compatibilities": [{"clusterVersion": "1.34", "defaultVersion": True}],
            },
        ]
        eks.answer(
            "describe_addon_versions",
            {"addons": [{"addonName": addon, "addonVersions": versions}]},
            addonName=addon,
            kubernetesVersion="1.34",
        )
    with stubbed_aws("us-west-2", eks=eks) as client:
        answers = aws_answers(spec, client)
    plan = plan_environment(spec, answers=answers)
    versions = {
        r.inputs["addonName"]: r.inputs["addonVersion"]
        for r in plan.resources
        if r.type == "aws:eks/addon:Addon"
    }
    assert versions == {addon: f"v1-{addon}" for addon in MANAGED_ADDONS}
    assert plan.assumptions == []
    assert set(answers.asked) == {"account", "zones", "offerings", "addons"}


def test_without_the_flag_the_plan_asks_aws_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An endpoint where nothing listens: any request would fail.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    write_env(tmp_path, "dev", "us-west-2")
    result = _plan(tmp_path, "dev")
    assert result.exit_code == 0, result.output
    assert "nothing was sent to AWS" in result.stdout
