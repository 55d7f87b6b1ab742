"""Each rule on minimal resources: one that passes, one that breaks it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fermion.policies import RULES, Finding, Resource, evaluate, rule_named

P = "urn:pulumi:s::p::fermion:index:X::x"


def res(type_: str, name: str, parent: str | None = P, **inputs: Any) -> Resource:
    return Resource(f"urn:{type_}::{name}", type_, name, inputs, parent)


def names(findings: list[Finding]) -> list[str]:
    return sorted(f.policy for f in findings)


def bucket_stack(**changes: Any) -> list[Resource]:
    policy = {
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ]
    }
    parts = {
        "bucket": res("aws:s3/bucket:Bucket", "m"),
        "block": res(
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            "m",
            bucket="(known after up)",
            blockPublicAcls=True,
            blockPublicPolicy=True,
            ignorePublicAcls=True,
            restrictPublicBuckets=True,
        ),
        "sse": res(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "m",
            bucket="(known after up)",
            rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}],
        ),
        "versioning": res(
            "aws:s3/bucketVersioning:BucketVersioning",
            "m",
            bucket="(known after up)",
            versioningConfiguration={"status": "Enabled"},
        ),
        "policy": res(
            "aws:s3/bucketPolicy:BucketPolicy",
            "m",
            bucket="(known after up)",
            policy=json.dumps(policy),
        ),
    }
    parts.update(changes)
    return [r for r in parts.values() if r is not None]


def test_every_rule_is_named_once_and_described() -> None:
    assert len({r.name for r in RULES}) == len(RULES)
    assert all(r.description and r.types for r in RULES)
    assert rule_named("s3-tls-only") is not None and rule_named("nope") is None


def test_a_locked_down_bucket_passes() -> None:
    assert evaluate(bucket_stack()) == []


@pytest.mark.parametrize(
    ("part", "replacement", "policy"),
    [
        ("block", None, "s3-public-access-blocked"),
        (
            "block",
            res(
                "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
                "m",
                bucket="(known after up)",
            ),
            "s3-public-access-blocked",
        ),
        ("sse", None, "s3-sse-kms"),
        ("versioning", None, "s3-versioning"),
        ("policy", None, "s3-tls-only"),
        (
            "policy",
            res("aws:s3/bucketPolicy:BucketPolicy", "m", bucket="x", policy='{"Statement": []}'),
            "s3-tls-only",
        ),
    ],
)
def test_a_bucket_missing_a_safeguard_is_found(part: str, replacement: Any, policy: str) -> None:
    found = evaluate(bucket_stack(**{part: replacement}))
    assert names(found) == [policy]
    assert found[0].urn == "urn:aws:s3/bucket:Bucket::m" and found[0].level == "mandatory"


def test_an_unknown_bucket_policy_is_left_to_up() -> None:
    unknown = res(
        "aws:s3/bucketPolicy:BucketPolicy",
        "m",
        bucket="(known after up)",
        policy="(known after up)",
    )
    assert evaluate(bucket_stack(policy=unknown)) == []


def test_an_access_log_bucket_may_use_sse_s3_without_versions() -> None:
    logs = res("aws:s3/bucket:Bucket", "logs", bucket="the-logs")
    stack = [
        *bucket_stack(),
        logs,
        res("aws:s3/bucketLogging:BucketLogging", "m", bucket="x", targetBucket="the-logs"),
        res(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "logs",
            bucket="the-logs",
            rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}],
        ),
    ]
    assert {f.policy for f in evaluate(stack) if f.urn == logs.urn} == {
        "s3-public-access-blocked",
        "s3-tls-only",
    }


def test_ecr_repositories_scan_and_keep_tags() -> None:
    good = res(
        "aws:ecr/repository:Repository",
        "r",
        imageScanningConfiguration={"scanOnPush": True},
        imageTagMutability="IMMUTABLE",
    )
    bad = res("aws:ecr/repository:Repository", "r", imageTagMutability="MUTABLE")
    assert evaluate([good]) == []
    assert names(evaluate([bad])) == ["ecr-immutable-tags", "ecr-scan-on-push"]


CLUSTER = {
    "encryptionConfig": {"provider": {"keyArn": "arn:aws:kms:k"}, "resources": ["secrets"]},
    "enabledClusterLogTypes": ["api", "audit"],
    "vpcConfig": {"endpointPublicAccess": False},
}


@pytest.mark.parametrize(
    ("change", "policy", "level"),
    [
        ({}, None, None),
        ({"encryptionConfig": None}, "eks-secrets-encryption", "mandatory"),
        ({"enabledClusterLogTypes": ["api"]}, "eks-audit-logs", "mandatory"),
        ({"vpcConfig": {}}, "eks-public-endpoint-cidrs", "advisory"),
        (
            {"vpcConfig": {"publicAccessCidrs": ["0.0.0.0/0"]}},
            "eks-public-endpoint-cidrs",
            "advisory",
        ),
        ({"vpcConfig": {"publicAccessCidrs": ["203.0.113.0/24"]}}, None, None),
    ],
)
def test_eks_clusters(change: dict[str, Any], policy: str | None, level: str | None) -> None:
    found = evaluate([res("aws:eks/cluster:Cluster", "c", **{**CLUSTER, **change})])
    assert [(f.policy, f.level) for f in found] == ([] if policy is None else [(policy, level)])


def node_group(**inputs: Any) -> list[Resource]:
    template = res(
        "aws:ec2/launchTemplate:LaunchTemplate",
        "g-nodes",
        metadataOptions={"httpTokens": "required"},
    )
    return [
        template,
        res(
            "aws:eks/nodeGroup:NodeGroup", "g", launchTemplate={"id": "(known after up)"}, **inputs
        ),
    ]


def test_node_groups_need_imdsv2_and_gpu_taints() -> None:
    assert evaluate(node_group(instanceTypes=["m7i.large"])) == []
    assert names(evaluate([res("aws:eks/nodeGroup:NodeGroup", "g")])) == ["node-imdsv2"]
    loose = [res("aws:ec2/launchTemplate:LaunchTemplate", "g-nodes"), node_group()[1]]
    assert names(evaluate(loose)) == ["node-imdsv2"]
    gpu = node_group(amiType="AL2023_x86_64_NVIDIA", instanceTypes=["g6.xlarge"])
    assert names(evaluate(gpu)) == ["gpu-pool-tainted"]
    taint = [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert evaluate(node_group(instanceTypes=["p5.48xlarge"], taints=taint)) == []


def test_open_ingress_is_advisory_and_allows_https_to_a_balancer() -> None:
    anywhere = {"cidrBlocks": ["0.0.0.0/0"], "fromPort": 443, "toPort": 443, "protocol": "tcp"}
    balancer = res("aws:ec2/securityGroup:SecurityGroup", "api-lb", ingress=[anywhere])
    assert evaluate([balancer]) == []
    ssh = {**anywhere, "fromPort": 22, "toPort": 22}
    found = evaluate([res("aws:ec2/securityGroup:SecurityGroup", "nodes", ingress=[ssh])])
    assert [(f.policy, f.level) for f in found] == [("sg-open-ingress", "advisory")]
    rule = res(
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        "r",
        cidrIpv4="0.0.0.0/0",
        fromPort=443,
        toPort=443,
    )
    assert names(evaluate([rule])) == ["sg-open-ingress"]


GOOD_CONTAINER: dict[str, Any] = {
    "name": "server",
    "image": "1.dkr.ecr.us-west-2.amazonaws.com/fermion/runtime:de8c19c446efe65b",
    "resources": {"limits": {"memory": "1Gi"}, "requests": {"cpu": "1"}},
    "securityContext": {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
    },
}


def deployment(container: dict[str, Any] | None = None, **pod: Any) -> Resource:
    spec = {"containers": [GOOD_CONTAINER if container is None else container], **pod}
    return res("kubernetes:apps/v1:Deployment", "d", spec={"template": {"spec": spec}})


def with_context(**context: Any) -> dict[str, Any]:
    return {**GOOD_CONTAINER, "securityContext": {**GOOD_CONTAINER["securityContext"], **context}}


@pytest.mark.parametrize(
    ("resource", "policy"),
    [
        (deployment(with_context(runAsNonRoot=None)), "pod-non-root"),
        (deployment(with_context(readOnlyRootFilesystem=False)), "pod-read-only-root-fs"),
        (deployment(with_context(allowPrivilegeEscalation=True)), "pod-no-privilege-escalation"),
        (deployment(with_context(privileged=True)), "pod-not-privileged"),
        (deployment(volumes=[{"name": "h", "hostPath": {"path": "/"}}]), "pod-no-host-path"),
        (deployment(hostNetwork=True), "pod-no-host-network"),
        (deployment({**GOOD_CONTAINER, "resources": {}}), "pod-resource-limits"),
        (
            deployment(
                {
                    **GOOD_CONTAINER,
                    "resources": {
                        "limits": {"memory": "1Gi", "nvidia.com/gpu": "1"},
                        "requests": {"cpu": "1"},
                    },
                }
            ),
            "pod-gpu-toleration",
        ),
        (
            deployment(tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}]),
            "pod-gpu-toleration",
        ),
        (deployment({**GOOD_CONTAINER, "image": "python:latest"}), "image-pinned"),
    ],
)
def test_pod_rules(resource: Resource, policy: str) -> None:
    assert names(evaluate([resource])) == [policy]


def test_a_locked_down_pod_passes_and_a_digest_pins() -> None:
    assert evaluate([deployment()]) == []
    digest = "python@sha256:" + "a" * 64
    assert evaluate([deployment({**GOOD_CONTAINER, "image": digest})]) == []
    assert evaluate([deployment({**GOOD_CONTAINER, "image": "(known after up)"})]) == []


def test_a_daemon_set_may_tolerate_the_gpu_taint_and_still_keeps_every_other_rule() -> None:
    toleration = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]

    def daemon_set(container: dict[str, Any], **pod: Any) -> Resource:
        spec = {"containers": [container], "tolerations": toleration, **pod}
        return res("kubernetes:apps/v1:DaemonSet", "c", spec={"template": {"spec": spec}})

    # One pod on every node follows the nodes and never keeps a GPU node up.
    assert evaluate([daemon_set(GOOD_CONTAINER)]) == []
    assert names(
        evaluate([daemon_set(GOOD_CONTAINER, volumes=[{"name": "h", "hostPath": {}}])])
    ) == ["pod-no-host-path"]
    assert names(evaluate([daemon_set(with_context(runAsNonRoot=None))])) == ["pod-non-root"]


def test_a_public_service_needs_tls_and_tokens() -> None:
    nlb = "service.beta.kubernetes.io/aws-load-balancer"
    public = {"annotations": {f"{nlb}-scheme": "internet-facing"}}
    internal = {"annotations": {f"{nlb}-scheme": "internal"}}

    def service(meta: dict[str, Any]) -> Resource:
        spec = {"type": "LoadBalancer"}
        return res("kubernetes:core/v1:Service", "s", metadata=meta, spec=spec)

    assert names(evaluate([service(public)])) == ["service-not-public"]
    assert evaluate([service(internal)]) == []
    assert evaluate([res("kubernetes:core/v1:Service", "s", spec={"ports": []})]) == []


def role_stack(statement: dict[str, Any], account: str = "embed") -> list[Resource]:
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}}]}
    return [
        res("aws:iam/role:Role", "r", assumeRolePolicy=json.dumps(trust)),
        res(
            "aws:iam/rolePolicy:RolePolicy",
            "r",
            role="(known after up)",
            policy=json.dumps({"Statement": [statement]}),
        ),
        res(
            "aws:eks/podIdentityAssociation:PodIdentityAssociation",
            "r",
            roleArn="(known after up)",
            serviceAccount=account,
        ),
    ]


READ = {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/embed/*"]}


@pytest.mark.parametrize(
    ("statement", "policy"),
    [
        (READ, None),
        ({**READ, "Action": "*"}, "iam-no-wildcards"),
        ({**READ, "Action": ["s3:PutObject"], "Resource": "*"}, "iam-no-wildcards"),
        ({**READ, "Action": ["ec2:DescribeImages"], "Resource": "*"}, None),
        ({**READ, "Resource": ["arn:aws:s3:::b/*"]}, "iam-model-reader-prefix"),
        ({**READ, "Resource": ["arn:aws:s3:::b/other/*"]}, "iam-model-reader-prefix"),
    ],
)
def test_workload_roles(statement: dict[str, Any], policy: str | None) -> None:
    assert names(evaluate(role_stack(statement))) == ([] if policy is None else [policy])


def test_a_node_role_is_not_a_workload_role() -> None:
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}}]}
    stack = role_stack({**READ, "Action": "*"})
    stack[0] = res("aws:iam/role:Role", "r", assumeRolePolicy=json.dumps(trust))
    assert evaluate(stack) == []


def test_an_add_on_role_in_a_system_namespace_is_not_a_workload_role() -> None:
    stack = role_stack({**READ, "Action": ["ec2:CreateSecurityGroup"], "Resource": "*"})
    account = stack[2]
    stack[2] = res(account.type, account.name, **{**account.inputs, "namespace": "kube-system"})
    assert evaluate(stack) == []
    stack[2] = res(account.type, account.name, **{**account.inputs, "namespace": "inference"})
    assert names(evaluate(stack)) == ["iam-no-wildcards"]
