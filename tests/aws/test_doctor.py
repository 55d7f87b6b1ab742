"""`fermion doctor` against a real moto server.

moto answers STS, EC2 (regions, zones, and instance-type offerings from its own data), S3, KMS
and SSM. It lacks three things, and only those calls are answered by botocore's Stubber, each
test saying which:
- Service Quotas values for EC2 (moto knows only the VPC quotas);
- EKS DescribeClusterVersions (moto's server answers 404);
- the public SSM parameters of the EKS-optimized AMIs (moto holds none, and refuses to let a
  test write under /aws/service/).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from fermion.cli import app
from fermion.environments.stack_files import load_environment
from fermion.stacks import aws_lookups
from fermion.stacks.bootstrap import bootstrap
from fermion.stacks.doctor import Check, DoctorReport, nvidia_ami_parameter, run_doctor

from .support import Stubbed, aws, stubbed_aws, unique, with_stubs, write_env

__all__ = ["aws"]

runner = CliRunner()
AMI = "ami-0123456789abcdef0"


def _quotas(region: str, *values: float) -> Stubbed:
    """Service Quotas, which moto lacks for EC2: one value per quota asked, in order."""
    stub = Stubbed("service-quotas", region)
    for value in values:
        stub.answer(
            "get_service_quota", {"Quota": {"QuotaCode": "L-x", "QuotaName": "q", "Value": value}}
        )
    return stub


def _eks(region: str, status: str = "STANDARD_SUPPORT", version: str = "1.34") -> Stubbed:
    """EKS DescribeClusterVersions, which moto's server answers with 404."""
    return Stubbed("eks", region).answer(
        "describe_cluster_versions",
        {"clusterVersions": [{"clusterVersion": version, "versionStatus": status}]},
        clusterVersions=[version],
        includeAll=True,
    )


def _ssm(region: str, version: str = "1.34") -> Stubbed:
    """The public AMI parameter, which moto does not hold."""
    name = nvidia_ami_parameter(version, "al2023")
    return Stubbed("ssm", region).answer(
        "get_parameter", {"Parameter": {"Name": name, "Value": AMI}}, Name=name
    )


def _by_name(report: DoctorReport) -> dict[str, Check]:
    return {c.name: c for c in report.checks}


@pytest.fixture
def ready(aws: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    """A us-west-2 environment with one GPU pool (2 x g6.2xlarge, 8 vCPUs each: 16 G vCPUs; the
    system nodes 3 x m7i.xlarge: 12 Standard vCPUs), bootstrapped."""
    write_env(tmp_path, "dev", "us-west-2")
    bootstrap("dev", "us-west-2", tmp_path, bucket=unique("state"))
    yield tmp_path


def test_everything_passes(ready: Path) -> None:
    spec = load_environment("dev", ready)
    quotas = _quotas("us-west-2", 64, 32)
    with stubbed_aws(
        "us-west-2", service_quotas=quotas, eks=_eks("us-west-2"), ssm=_ssm("us-west-2")
    ) as client:
        report = run_doctor(spec, ready, client)
    checks = _by_name(report)
    assert {c.status for c in report.checks} == {"pass"}, report.checks
    assert not report.failed
    assert report.account == "123456789012"
    assert "us-west-2a, us-west-2b" in checks["zones: gpu"].detail
    assert "16 vCPUs (gpu 2 x 8)" in checks["quota: G and VT on-demand"].detail
    assert "12 vCPUs (system 3 x 4)" in checks["quota: Standard on-demand"].detail
    assert AMI in checks["NVIDIA AMI: al2023"].detail
    assert "fermion bootstrap" in checks["state backend"].detail


def test_a_quota_too_small_fails_with_the_request_to_raise_it(ready: Path) -> None:
    spec = load_environment("dev", ready)
    quotas = _quotas("us-west-2", 8, 32)
    with stubbed_aws(
        "us-west-2", service_quotas=quotas, eks=_eks("us-west-2"), ssm=_ssm("us-west-2")
    ) as client:
        report = run_doctor(spec, ready, client)
    quota = _by_name(report)["quota: G and VT on-demand"]
    assert quota.status == "fail"
    assert "need up to 16 vCPUs" in quota.detail and "the quota is 8 vCPUs" in quota.detail
    assert quota.fix is not None
    assert "--quota-code L-DB2E81BA --desired-value 16 --region us-west-2" in quota.fix
    assert report.failed


def test_an_account_without_its_own_quota_value_gets_awss_default(ready: Path) -> None:
    spec = load_environment("dev", ready)
    quotas = (
        Stubbed("service-quotas", "us-west-2")
        .fail("get_service_quota", "NoSuchResourceException")
        .answer("get_aws_default_service_quota", {"Quota": {"QuotaCode": "L-DB2E81BA", "Value": 0}})
        .answer("get_service_quota", {"Quota": {"QuotaCode": "L-1216C47A", "Value": 32}})
    )
    with stubbed_aws(
        "us-west-2", service_quotas=quotas, eks=_eks("us-west-2"), ssm=_ssm("us-west-2")
    ) as client:
        report = run_doctor(spec, ready, client)
    quota = _by_name(report)["quota: G and VT on-demand"]
    assert quota.status == "fail"
    assert "0 vCPUs (L-DB2E81BA, AWS's default)" in quota.detail


def test_spot_pools_are_counted_against_the_spot_quota(aws: dict[str, str], tmp_path: Path) -> None:
    write_env(
        tmp_path,
        "spot",
        "us-west-2",
        {
            "network": {"availability_zones": 2},
            "node_pools": [
                {"name": "a", "shape": "gpu.l4", "capacity": "spot", "size": {"max": 3}},
                {"name": "b", "shape": "gpu.a100-40gb", "capacity": "spot", "size": {"max": 1}},
            ],
        },
    )
    spec = load_environment("spot", tmp_path)
    quotas = _quotas("us-west-2", 24, 96, 12)  # G spot, P spot, Standard on-demand
    with stubbed_aws(
        "us-west-2", service_quotas=quotas, eks=_eks("us-west-2"), ssm=_ssm("us-west-2")
    ) as client:
        checks = _by_name(run_doctor(spec, tmp_path, client))
    assert checks["quota: G and VT spot"].status == "pass"
    assert "24 vCPUs (a 3 x 8)" in checks["quota: G and VT spot"].detail
    assert "96 vCPUs (b 1 x 96)" in checks["quota: P spot"].detail


def test_a_region_that_sells_the_type_in_no_zone_fails(aws: dict[str, str], tmp_path: Path) -> None:
    # moto's offerings data: eu-west-1 sells no g6 (the L4 shapes) at all.
    write_env(tmp_path, "dub", "eu-west-1")
    checks = _doctor_without_stubbed_checks(tmp_path, "dub", "eu-west-1")
    pool = checks["zones: gpu"]
    assert pool.status == "fail"
    assert "no zone of eu-west-1 sells all of gpu.l4 (g6.xlarge, g6.2xlarge)" in pool.detail
    assert checks["zones: system"].status == "pass"


def test_a_type_sold_in_fewer_zones_than_the_network_warns(
    aws: dict[str, str], tmp_path: Path
) -> None:
    # moto's offerings data: eu-north-1 sells g6 in its zones a and b, not c.
    write_env(
        tmp_path,
        "sto",
        "eu-north-1",
        {
            "network": {"availability_zones": 3},
            "node_pools": [{"name": "gpu", "shape": "gpu.l4"}],
        },
    )
    pool = _doctor_without_stubbed_checks(tmp_path, "sto", "eu-north-1")["zones: gpu"]
    assert pool.status == "warn"
    assert "sold in eu-north-1a, eu-north-1b only" in pool.detail
    assert "eu-north-1a, eu-north-1b, eu-north-1c" in pool.detail


def test_a_type_sold_only_outside_the_networks_zones_fails(
    aws: dict[str, str], tmp_path: Path
) -> None:
    # moto's offerings data: eu-north-1 sells p4d.24xlarge in zone c alone.
    write_env(
        tmp_path,
        "sto",
        "eu-north-1",
        {
            "network": {"availability_zones": 2},
            "node_pools": [{"name": "a100", "shape": "gpu.a100-40gb"}],
        },
    )
    pool = _doctor_without_stubbed_checks(tmp_path, "sto", "eu-north-1")["zones: a100"]
    assert pool.status == "fail"
    assert "sold in eu-north-1c, none of the network's eu-north-1a, eu-north-1b" in pool.detail


def test_a_region_not_enabled_fails(aws: dict[str, str], tmp_path: Path) -> None:
    # moto lists ap-east-1 as not opted in, as AWS does for a new account.
    write_env(tmp_path, "hk", "ap-east-1")
    region = _doctor_without_stubbed_checks(tmp_path, "hk", "ap-east-1")["region"]
    assert region.status == "fail"
    assert region.fix is not None and "enable-region --region-name ap-east-1" in region.fix


def test_no_nvidia_ami_for_the_version_fails(aws: dict[str, str], tmp_path: Path) -> None:
    # moto's own answer: the parameter does not exist.
    write_env(tmp_path, "dev", "us-west-2")
    ami = _doctor_without_stubbed_checks(tmp_path, "dev", "us-west-2")["NVIDIA AMI: al2023"]
    assert ami.status == "fail"
    assert "/aws/service/eks/optimized-ami/1.34/amazon-linux-2023/x86_64/nvidia/" in ami.detail


def test_bottlerocket_pools_ask_for_the_bottlerocket_parameter() -> None:
    assert nvidia_ami_parameter("1.33", "bottlerocket") == (
        "/aws/service/bottlerocket/aws-k8s-1.33-nvidia/x86_64/latest/image_id"
    )


@pytest.mark.parametrize(
    ("status", "verdict"),
    [("EXTENDED_SUPPORT", "warn"), ("UNSUPPORTED", "fail"), ("STANDARD_SUPPORT", "pass")],
)
def test_eks_version_support(ready: Path, status: str, verdict: str) -> None:
    spec = load_environment("dev", ready)
    eks = _eks("us-west-2", status)
    with stubbed_aws(
        "us-west-2", service_quotas=_quotas("us-west-2", 64, 32), eks=eks, ssm=_ssm("us-west-2")
    ) as client:
        assert _by_name(run_doctor(spec, ready, client))["EKS version"].status == verdict


def test_a_botocore_without_describe_cluster_versions_warns(ready: Path) -> None:
    spec = load_environment("dev", ready)
    with stubbed_aws(
        "us-west-2", service_quotas=_quotas("us-west-2", 64, 32), ssm=_ssm("us-west-2")
    ) as client:
        client._clients["eks"] = object()  # an older botocore's client: no such method
        check = _by_name(run_doctor(spec, ready, client))["EKS version"]
    assert check.status == "warn"
    assert "could not be checked" in check.detail


def test_models_bucket_free_or_ours_passes(aws: dict[str, str], tmp_path: Path) -> None:
    ours = unique("models")
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=ours)
    for bucket, words in ((unique("free"), "is free"), (ours, "exists in this account")):
        environment = {"network": {"availability_zones": 2}, "storage": {"bucket": bucket}}
        write_env(tmp_path, "m", "us-east-1", environment)
        check = _doctor_without_stubbed_checks(tmp_path, "m", "us-east-1")["models bucket"]
        assert check.status == "pass" and words in check.detail


def test_models_bucket_owned_elsewhere_fails(ready: Path) -> None:
    environment = {
        "network": {"availability_zones": 2},
        "node_pools": [{"name": "gpu", "shape": "gpu.l4"}],
        "storage": {"bucket": "someone-elses-bucket"},
    }
    write_env(ready, "dev", "us-west-2", environment)
    spec = load_environment("dev", ready)
    # moto is one account and cannot hold another's bucket: S3's 403 to the HEAD on the models
    # bucket comes from the Stubber; the HEAD on the state bucket after it gets moto's own 200
    # (answered here the same, as the stubbed client takes every S3 call).
    s3 = Stubbed("s3", "us-west-2").fail("head_bucket", "403", 403, "Forbidden")
    s3.answer("head_bucket", {})
    with stubbed_aws(
        "us-west-2",
        s3=s3,
        service_quotas=_quotas("us-west-2", 64, 32),
        eks=_eks("us-west-2"),
        ssm=_ssm("us-west-2"),
    ) as client:
        report = run_doctor(spec, ready, client)
    check = _by_name(report)["models bucket"]
    assert check.status == "fail"
    assert "someone-elses-bucket belongs to another AWS account" in check.detail
    assert check.fix is not None and "storage.bucket" in check.fix
    assert report.failed


def test_no_state_backend_fails_with_bootstrap_as_the_fix(
    aws: dict[str, str], tmp_path: Path
) -> None:
    write_env(tmp_path, "dev", "us-west-2")
    check = _doctor_without_stubbed_checks(tmp_path, "dev", "us-west-2")["state backend"]
    assert check.status == "fail"
    assert check.fix == "Run `fermion bootstrap dev`"


def test_a_deleted_state_bucket_fails(ready: Path) -> None:
    bucket = json.loads((ready / ".fermion" / "backend.json").read_text())["environments"]["dev"][
        "bucket"
    ]
    s3 = boto3.resource("s3", region_name="us-west-2").Bucket(bucket)
    s3.object_versions.delete()
    s3.delete()
    check = _doctor_without_stubbed_checks(ready, "dev", "us-west-2")["state backend"]
    assert check.status == "fail"
    assert f"the bucket {bucket} does not exist" in check.detail


def test_cli_table_and_exit_codes(ready: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def connect(quota: float) -> Any:
        return lambda region: with_stubs(
            region, service_quotas=_quotas(region, quota, 32), eks=_eks(region), ssm=_ssm(region)
        )

    monkeypatch.setattr(aws_lookups, "connect", connect(64))
    result = runner.invoke(app, ["doctor", "dev", "--stacks-dir", str(ready)])
    assert result.exit_code == 0, result.output
    assert "pass" in result.stdout and "fail" not in result.stdout
    assert "zones: gpu" in result.stdout

    # The same environment without its GPU quota: exit 1, and the JSON says why.
    monkeypatch.setattr(aws_lookups, "connect", connect(4))
    result = runner.invoke(app, ["doctor", "dev", "--stacks-dir", str(ready), "--json"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["ok"] is False
    failed = [c["name"] for c in document["checks"] if c["status"] == "fail"]
    assert failed == ["quota: G and VT on-demand"]


def _doctor_without_stubbed_checks(folder: Path, env: str, region: str) -> dict[str, Check]:
    """Doctor on moto alone: the checks moto cannot answer warn, and the rest are moto's."""
    spec = load_environment(env, folder)
    return _by_name(run_doctor(spec, folder, aws_lookups.Aws(region)))
