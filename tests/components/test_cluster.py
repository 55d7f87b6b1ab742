from __future__ import annotations

import json
from typing import Any

import pulumi

from fermion.components.cluster import MANAGED_ADDONS, Cluster, ClusterArgs
from fermion.components.existing_cluster import ExistingCluster
from fermion.components.kubeconfig import kubeconfig
from fermion.environments import load_shapes

from .conftest import Recorder, resolve, settle

_GET_CLUSTER = "aws:eks/getCluster:getCluster"

SUBNETS = ["subnet-a", "subnet-b"]
ZONES = ["us-west-2a", "us-west-2b"]


def _mock_aws(mocks: Recorder) -> None:
    mocks.outputs["aws:eks/cluster:Cluster"] = {
        "endpoint": "https://ABC.gr7.us-west-2.eks.amazonaws.com",
        "certificateAuthority": {"data": "Q0VSVA=="},
        "identities": [{"oidcs": [{"issuer": "https://oidc.eks.us-west-2.amazonaws.com/id/ABC"}]}],
        "arn": "arn:aws:eks:us-west-2:123456789012:cluster/fermion-dev",
    }
    mocks.outputs["aws:kms/key:Key"] = {"arn": "arn:aws:kms:us-west-2:123456789012:key/k"}
    mocks.outputs["aws:iam/role:Role"] = {"arn": "arn:aws:iam::123456789012:role/r"}
    mocks.outputs["aws:eks/nodeGroup:NodeGroup"] = {
        "resources": [{"autoscalingGroups": [{"name": "asg"}]}]
    }
    mocks.outputs["aws:ec2/launchTemplate:LaunchTemplate"] = {"latestVersion": 1}
    mocks.call_results["aws:eks/getAddonVersion:getAddonVersion"] = {
        "version": "v1.0.0-eksbuild.1",
        "id": "x",
    }
    mocks.call_results["aws:index/getRegion:getRegion"] = {
        "name": "us-west-2",
        "region": "us-west-2",
        "id": "us-west-2",
    }
    mocks.call_results["aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings"] = {
        "instanceTypes": ["m7i.xlarge", "m6i.xlarge"] * 2,
        "locations": ["us-west-2a", "us-west-2a", "us-west-2b", "us-west-2b"],
        "locationTypes": ["availability-zone"] * 4,
        "id": "x",
    }


def _cluster(mocks: Recorder, **overrides: Any) -> Cluster:
    _mock_aws(mocks)
    values: dict[str, Any] = {
        "name": "fermion-dev",
        "version": "1.34",
        "subnet_ids": SUBNETS,
        "subnet_zones": ZONES,
        "system_shape": load_shapes().get("cpu.medium"),
    }
    values.update(overrides)
    cluster = Cluster("dev", ClusterArgs(**values))
    resolve(cluster.kubeconfig)
    settle()
    return cluster


def _eks(mocks: Recorder) -> dict[str, Any]:
    (cluster,) = mocks.of_type("aws:eks/cluster:Cluster")
    return dict(cluster.inputs)


def test_secrets_are_encrypted_with_a_rotating_key(mocks: Recorder) -> None:
    _cluster(mocks)
    encryption = _eks(mocks)["encryptionConfig"]
    assert encryption["resources"] == ["secrets"]
    assert encryption["provider"]["keyArn"] == "arn:aws:kms:us-west-2:123456789012:key/k"
    (key,) = mocks.of_type("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True


def test_the_endpoint_is_private_by_default_and_logs_are_on(mocks: Recorder) -> None:
    _cluster(mocks)
    eks = _eks(mocks)
    assert eks["vpcConfig"]["endpointPrivateAccess"] is True
    assert eks["vpcConfig"]["endpointPublicAccess"] is False
    assert "publicAccessCidrs" not in eks["vpcConfig"]
    assert eks["vpcConfig"]["subnetIds"] == SUBNETS
    assert set(eks["enabledClusterLogTypes"]) == {"api", "audit", "authenticator"}
    assert eks["accessConfig"]["authenticationMode"] == "API"
    assert eks["version"] == "1.34"
    assert eks["kubernetesNetworkConfig"]["serviceIpv4Cidr"] == "172.20.0.0/16"


def test_a_public_endpoint_is_limited_to_its_cidrs(mocks: Recorder) -> None:
    _cluster(mocks, endpoint_public=True, public_access_cidrs=("203.0.113.0/24",))
    assert _eks(mocks)["vpcConfig"]["publicAccessCidrs"] == ["203.0.113.0/24"]


def test_admins_get_access_entries(mocks: Recorder) -> None:
    admin = "arn:aws:iam::123456789012:role/platform-admins"
    _cluster(mocks, admin_arns=(admin,))
    (entry,) = mocks.of_type("aws:eks/accessEntry:AccessEntry")
    assert entry.inputs["principalArn"] == admin
    (association,) = mocks.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert association.inputs["policyArn"].endswith("AmazonEKSClusterAdminPolicy")
    assert association.inputs["accessScope"] == {"type": "cluster"}


def test_managed_addons_are_pinned_and_ebs_uses_pod_identity(mocks: Recorder) -> None:
    _cluster(mocks)
    addons = {a.inputs["addonName"]: a.inputs for a in mocks.of_type("aws:eks/addon:Addon")}
    assert set(addons) == set(MANAGED_ADDONS)
    assert all(a["addonVersion"] == "v1.0.0-eksbuild.1" for a in addons.values())
    (association,) = addons["aws-ebs-csi-driver"]["podIdentityAssociations"]
    assert association["serviceAccount"] == "ebs-csi-controller-sa"
    trusts = [
        json.loads(r.inputs["assumeRolePolicy"])["Statement"][0]["Principal"]
        for r in mocks.of_type("aws:iam/role:Role")
    ]
    assert {"Service": "pods.eks.amazonaws.com"} in trusts
    assert {"Service": "eks.amazonaws.com"} in trusts
    # Tenants' NetworkPolicies are enforced only with the VPC CNI's network policy agent on.
    assert json.loads(addons["vpc-cni"]["configurationValues"]) == {"enableNetworkPolicy": "true"}


def test_irsa_is_optional(mocks: Recorder) -> None:
    _cluster(mocks)
    assert not mocks.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")


def test_irsa_adds_an_oidc_provider(mocks: Recorder) -> None:
    cluster = _cluster(mocks, irsa=True)
    (oidc,) = mocks.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert oidc.inputs["url"] == "https://oidc.eks.us-west-2.amazonaws.com/id/ABC"
    assert oidc.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    # Exported, so a role for one's own add-on can trust the provider for its issuer.
    assert cluster.oidc_issuer is not None
    found: list[str] = []
    cluster.oidc_issuer.apply(found.append)
    settle()
    assert found == ["https://oidc.eks.us-west-2.amazonaws.com/id/ABC"]


def test_the_system_node_group(mocks: Recorder) -> None:
    _cluster(mocks)
    (group,) = mocks.of_type("aws:eks/nodeGroup:NodeGroup")
    assert group.inputs["amiType"] == "AL2023_x86_64_STANDARD"
    assert group.inputs["labels"]["fermion.dev/role"] == "system"
    assert group.inputs["scalingConfig"] == {"minSize": 2, "maxSize": 3, "desiredSize": 2}


def test_kubeconfig_and_provider(mocks: Recorder) -> None:
    cluster = _cluster(mocks)
    config = json.loads(resolve(cluster.kubeconfig))
    assert config["clusters"][0]["cluster"]["server"].startswith("https://ABC")
    assert config["users"][0]["user"]["exec"]["args"][:4] == [
        "eks",
        "get-token",
        "--cluster-name",
        "fermion-dev",
    ]
    (provider,) = mocks.of_type("pulumi:providers:kubernetes")
    assert "fermion:index:Cluster$pulumi:providers:kubernetes::dev-k8s" in resolve(
        cluster.provider.urn
    )
    assert provider.name == "dev-k8s"


def test_the_core_bundles_what_components_on_the_cluster_need(mocks: Recorder) -> None:
    cluster = _cluster(mocks, region="us-west-2")
    core = cluster.core
    assert resolve(pulumi.Output.from_input(core.name)) == resolve(cluster.cluster_name)
    assert core.provider is cluster.provider
    assert core.region == "us-west-2"
    assert core.subnet_ids == SUBNETS
    assert core.subnet_zones == ZONES
    assert core.oidc_provider_arn is None


def test_the_core_of_a_cluster_with_irsa_names_its_oidc_provider(mocks: Recorder) -> None:
    mocks.outputs["aws:iam/openIdConnectProvider:OpenIdConnectProvider"] = {
        "arn": "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/ABC"
    }
    cluster = _cluster(mocks, irsa=True)
    assert cluster.core.oidc_provider_arn is cluster.oidc_provider_arn
    assert resolve(pulumi.Output.from_input(cluster.core.oidc_provider_arn)).endswith("/id/ABC")
    # Without a region given, the provider's is looked up once and shared.
    assert resolve(pulumi.Output.from_input(cluster.core.region)) == "us-west-2"


def test_kubeconfig_text() -> None:
    text = kubeconfig("c", "https://e", "Q0E=", "eu-west-1")
    assert json.loads(text)["current-context"] == "c"
    assert "--region" in text and "eu-west-1" in text


def test_an_existing_cluster_is_looked_up_and_gets_a_provider(mocks: Recorder) -> None:
    mocks.call_results[_GET_CLUSTER] = {
        "name": "team-cluster",
        "endpoint": "https://XYZ.gr7.eu-west-1.eks.amazonaws.com",
        "version": "1.33",
        "certificateAuthorities": [{"data": "Q0E="}],
        "id": "team-cluster",
    }
    cluster = ExistingCluster("shared", "team-cluster", region="eu-west-1")
    config = json.loads(resolve(cluster.kubeconfig))
    settle()
    assert config["clusters"][0]["cluster"] == {
        "server": "https://XYZ.gr7.eu-west-1.eks.amazonaws.com",
        "certificate-authority-data": "Q0E=",
    }
    assert config["users"][0]["user"]["exec"]["args"][3:6] == [
        "team-cluster",
        "--region",
        "eu-west-1",
    ]
    assert resolve(cluster.version) == "1.33"
    # Nothing is created in AWS: only the component and its Kubernetes provider.
    assert sorted(r.typ for r in mocks.resources) == [
        "fermion:index:ExistingCluster",
        "pulumi:providers:kubernetes",
    ]
    (lookup,) = [c for c in mocks.calls if c.token == _GET_CLUSTER]
    assert lookup.args["name"] == "team-cluster"
    assert resolve(pulumi.Output.from_input(cluster.core.name)) == "team-cluster"
    assert cluster.core.provider is cluster.provider
    assert cluster.core.region == "eu-west-1"


def test_an_existing_cluster_places_nodes_in_the_subnets_given(mocks: Recorder) -> None:
    mocks.call_results[_GET_CLUSTER] = {
        "name": "team-cluster",
        "endpoint": "https://x",
        "certificateAuthorities": [{"data": "Q0E="}],
    }
    cluster = ExistingCluster(
        "shared",
        "team-cluster",
        region="eu-west-1",
        subnet_ids=["subnet-a", "subnet-b"],
        subnet_zones=["eu-west-1a", "eu-west-1b"],
    )
    assert resolve(pulumi.Output.from_input(cluster.core.subnet_ids)) == ["subnet-a", "subnet-b"]
    assert resolve(pulumi.Output.from_input(cluster.core.subnet_zones)) == [
        "eu-west-1a",
        "eu-west-1b",
    ]
    settle()
    assert not [c for c in mocks.calls if c.token == "aws:ec2/getSubnet:getSubnet"]


def test_an_existing_cluster_looks_up_its_subnets_and_their_zones(mocks: Recorder) -> None:
    mocks.call_results[_GET_CLUSTER] = {
        "name": "team-cluster",
        "endpoint": "https://x",
        "certificateAuthorities": [{"data": "Q0E="}],
        "vpcConfig": {"subnetIds": ["subnet-a", "subnet-b"]},
    }
    mocks.call_results["aws:ec2/getSubnet:getSubnet"] = {"availabilityZone": "eu-west-1c"}
    cluster = ExistingCluster("shared", "team-cluster", region="eu-west-1")
    assert resolve(pulumi.Output.from_input(cluster.core.subnet_ids)) == ["subnet-a", "subnet-b"]
    assert resolve(pulumi.Output.from_input(cluster.core.subnet_zones)) == ["eu-west-1c"] * 2
    settle()
    looked_up = [c.args["id"] for c in mocks.calls if c.token == "aws:ec2/getSubnet:getSubnet"]
    assert sorted(looked_up) == ["subnet-a", "subnet-b"]
