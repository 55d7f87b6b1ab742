"""Rules for the cluster and its network: EKS secrets encrypted and audited, a public API
endpoint only for named CIDRs, node groups on IMDSv2, GPU pools tainted, no open ingress."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from fermion.policies.findings import ADVISORY, MANDATORY, Resource, Rule
from fermion.policies.links import as_list, refers_to

__all__ = ["CLUSTER_RULES", "GPU_TAINT_KEY"]

CLUSTERS = ("aws:eks/cluster:Cluster",)
NODE_GROUPS = ("aws:eks/nodeGroup:NodeGroup",)
LAUNCH_TEMPLATES = ("aws:ec2/launchTemplate:LaunchTemplate",)
SECURITY_GROUPS = ("aws:ec2/securityGroup:SecurityGroup",)
INGRESS_RULES = (
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    "aws:ec2/securityGroupRule:SecurityGroupRule",
)
GPU_TAINT_KEY = "nvidia.com/gpu"
_ANYWHERE = ("0.0.0.0/0", "::/0")
_GPU_FAMILIES = ("p", "g")


def secrets_encryption(cluster: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """Kubernetes secrets are encrypted with a KMS key (envelope encryption)."""
    config = cluster.get("encryptionConfig")
    resources = as_list(config.get("resources")) if isinstance(config, dict) else []
    key = cluster.get("encryptionConfig", "provider", "keyArn")
    if "secrets" not in resources or not key:
        yield (
            "secrets are not encrypted with KMS: set encryption_config with a key and "
            "resources ['secrets']"
        )


def audit_logs(cluster: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """The control plane's audit log is on."""
    if "audit" not in as_list(cluster.get("enabledClusterLogTypes")):
        yield (
            "the audit log is off: add 'audit' to enabled_cluster_log_types "
            "(cluster.log_types in an environment)"
        )


def public_endpoint_cidrs(cluster: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """A public API endpoint answers only named CIDRs (EKS makes it public by default)."""
    if cluster.get("vpcConfig", "endpointPublicAccess") is False:
        return
    cidrs = as_list(cluster.get("vpcConfig", "publicAccessCidrs"))
    if not cidrs or any(c in _ANYWHERE for c in cidrs):
        yield (
            "the API endpoint is public to the whole internet: list public_access_cidrs "
            "(cluster.public_access_cidrs), or set endpoint_public false"
        )


def imdsv2(group: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """Nodes require IMDSv2 (session tokens), through their launch template, so a pod cannot
    read the node's credentials with one plain GET."""
    reference = group.get("launchTemplate", "id")
    if reference is None:
        reference = group.get("launchTemplate", "name")
    templates = [
        t
        for t in stack
        if t.type in LAUNCH_TEMPLATES and refers_to(reference, t, group, "name", "id")
    ]
    # Several beside it under one component: the one named after the group.
    named = [t for t in templates if t.name.startswith(group.name)]
    templates = named if named else templates
    if reference is None or not templates:
        yield (
            "no launch template: give the node group one with metadata_options.http_tokens "
            "'required'"
        )
        return
    for template in templates:
        if template.get("metadataOptions", "httpTokens") != "required":
            yield (
                f"launch template {template.name} allows IMDSv1: set "
                "metadata_options.http_tokens 'required'"
            )


def gpu_pool_tainted(group: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """A GPU node group carries the nvidia.com/gpu NoSchedule taint, so only pods that ask
    for GPUs land on its (expensive) nodes."""
    ami = str(group.get("amiType") or "")
    types = [str(t) for t in as_list(group.get("instanceTypes"))]
    gpu = "NVIDIA" in ami or any(t[:1] in _GPU_FAMILIES and t[1:2].isdigit() for t in types)
    if not gpu:
        return
    taints = [t for t in as_list(group.get("taints")) if isinstance(t, dict)]
    if not any(t.get("key") == GPU_TAINT_KEY and t.get("effect") == "NO_SCHEDULE" for t in taints):
        yield f"a GPU node group without the {GPU_TAINT_KEY} NO_SCHEDULE taint: add it"


def open_ingress(resource: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """No ingress from anywhere, except HTTPS (443) to a load balancer's group."""
    if resource.type in SECURITY_GROUPS:
        rules = [r for r in as_list(resource.get("ingress")) if isinstance(r, dict)]
        balancer = _is_balancer(resource)
    else:
        if (
            resource.type == "aws:ec2/securityGroupRule:SecurityGroupRule"
            and resource.get("type") != "ingress"
        ):
            return
        rules = [dict(resource.inputs)]
        groups = [g for g in stack if g.type in SECURITY_GROUPS and g.urn == resource.parent]
        balancer = _is_balancer(resource) or any(_is_balancer(g) for g in groups)
    for rule in rules:
        cidrs = [*as_list(rule.get("cidrBlocks")), *as_list(rule.get("ipv6CidrBlocks"))]
        cidrs += [c for c in (rule.get("cidrIpv4"), rule.get("cidrIpv6")) if c is not None]
        if not any(c in _ANYWHERE for c in cidrs):
            continue
        https = rule.get("fromPort") == 443 and rule.get("toPort") == 443
        if not (https and balancer):
            ports = f"{rule.get('fromPort')}-{rule.get('toPort')}"
            yield (
                f"ingress from anywhere on ports {ports}: name the CIDRs that need it, or put "
                "a load balancer on 443 in front"
            )


def _is_balancer(resource: Resource) -> bool:
    text = " ".join(str(resource.get(k) or "") for k in ("description", "name", "namePrefix"))
    text = f"{text} {resource.name}".lower()
    return "load balancer" in text or "load-balancer" in text or "-lb" in text or "elb" in text


CLUSTER_RULES = (
    Rule(
        "eks-secrets-encryption",
        MANDATORY,
        "EKS encrypts secrets with KMS.",
        CLUSTERS,
        secrets_encryption,
    ),
    Rule("eks-audit-logs", MANDATORY, "EKS writes the audit log.", CLUSTERS, audit_logs),
    Rule(
        "eks-public-endpoint-cidrs",
        ADVISORY,
        "A public EKS endpoint answers only named CIDRs.",
        CLUSTERS,
        public_endpoint_cidrs,
    ),
    Rule(
        "node-imdsv2",
        MANDATORY,
        "Node groups require IMDSv2 through their launch template.",
        NODE_GROUPS,
        imdsv2,
    ),
    Rule(
        "gpu-pool-tainted",
        MANDATORY,
        "GPU node groups carry the nvidia.com/gpu NoSchedule taint.",
        NODE_GROUPS,
        gpu_pool_tainted,
    ),
    Rule(
        "sg-open-ingress",
        ADVISORY,
        "No ingress from 0.0.0.0/0 except 443 on a load balancer.",
        SECURITY_GROUPS + INGRESS_RULES,
        open_ingress,
    ),
)
