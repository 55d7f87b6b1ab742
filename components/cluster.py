"""Cluster: an EKS control plane with secure defaults, its system nodes and managed add-ons.

Secrets are envelope-encrypted with a rotating KMS key; the API endpoint is private unless the
spec opens it to listed CIDRs; people get in through access entries, not the aws-auth ConfigMap;
workloads get AWS roles through EKS Pod Identity, whose roles trust `pods.eks.amazonaws.com` and
so are not tied to one cluster's OIDC issuer (IRSA stays available as an option).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from fermion.components.cluster_core import ClusterCore
from fermion.components.iam import service_role
from fermion.components.kms import rotating_key
from fermion.components.kubeconfig import kubeconfig_secret
from fermion.components.system_node_group import SystemNodeGroup, SystemNodeGroupArgs
from fermion.environments.shapes import Shape

# Managed add-ons, each pinned to the version AWS names as the default for the cluster's
# Kubernetes version (looked up at deploy time, then fixed in the stack's state).
MANAGED_ADDONS = (
    "vpc-cni",
    "coredns",
    "kube-proxy",
    "eks-pod-identity-agent",
    "aws-ebs-csi-driver",
)
_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
# EKS and Pod Identity pass session tags when they assume a role.
_TAGGED = ("sts:AssumeRole", "sts:TagSession")
_EBS_CSI_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"


@dataclass(frozen=True)
class ClusterArgs:
    """The control plane and its system node group.

    `subnet_ids` and `subnet_zones` are the private subnets and their zones, as `Network`
    exports them; the control plane's interfaces and the system nodes go there.
    """

    name: str
    version: str
    subnet_ids: pulumi.Input[Sequence[str]]
    subnet_zones: pulumi.Input[Sequence[str]]
    system_shape: Shape
    system_min: int = 2
    system_max: int = 3
    system_desired: int | None = None
    endpoint_public: bool = False
    public_access_cidrs: tuple[str, ...] = ()
    service_cidr: str = "172.20.0.0/16"
    log_types: tuple[str, ...] = ("api", "audit", "authenticator")
    admin_arns: tuple[str, ...] = ()
    irsa: bool = False
    region: pulumi.Input[str] | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


def pod_identity_role(
    name: str, policy_arns: Sequence[str], tags: Mapping[str, str], parent: pulumi.Resource
) -> aws.iam.Role:
    """An IAM role for a Kubernetes service account through EKS Pod Identity."""
    role, _ = service_role(name, "pods.eks.amazonaws.com", policy_arns, tags, parent, _TAGGED)
    return role


class Cluster(pulumi.ComponentResource):
    """An EKS cluster: control plane, system node group, managed add-ons, admin access.

    Outputs: `cluster_name`, `endpoint`, `certificate_authority`, `kubeconfig` (secret),
    `oidc_provider_arn` and `oidc_issuer` (with IRSA), `provider`, a pulumi-kubernetes
    Provider for the cluster, and `core`, what node pools, add-ons and services take to run on
    it.
    """

    cluster: aws.eks.Cluster
    cluster_name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider
    oidc_provider_arn: pulumi.Output[str] | None
    oidc_issuer: pulumi.Output[str] | None
    core: ClusterCore

    def __init__(
        self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fermion:index:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        self.key = rotating_key(
            name, f"Encrypts the Kubernetes secrets of EKS cluster {args.name}", 30, tags, self
        )
        role, _ = service_role(
            f"{name}-control-plane",
            "eks.amazonaws.com",
            ["arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"],
            tags,
            self,
            _TAGGED,
        )
        self.cluster = aws.eks.Cluster(
            name,
            name=args.name,
            version=args.version,
            role_arn=role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=args.subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=args.endpoint_public,
                public_access_cidrs=list(args.public_access_cidrs)
                if args.endpoint_public
                else None,
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=self.key.arn),
                resources=["secrets"],
            ),
            enabled_cluster_log_types=list(args.log_types),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API", bootstrap_cluster_creator_admin_permissions=True
            ),
            kubernetes_network_config=aws.eks.ClusterKubernetesNetworkConfigArgs(
                service_ipv4_cidr=args.service_cidr
            ),
            tags=tags,
            opts=child,
        )
        self.cluster_name = self.cluster.name
        cluster_child = pulumi.ResourceOptions(parent=self, depends_on=[self.cluster])

        for i, principal in enumerate(args.admin_arns):
            entry = aws.eks.AccessEntry(
                f"{name}-admin-{i}",
                cluster_name=self.cluster.name,
                principal_arn=principal,
                type="STANDARD",
                tags=tags,
                opts=child,
            )
            aws.eks.AccessPolicyAssociation(
                f"{name}-admin-{i}",
                cluster_name=self.cluster.name,
                principal_arn=principal,
                policy_arn=_ADMIN_POLICY,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]),
            )

        self.oidc_provider_arn = None
        self.oidc_issuer = None
        if args.irsa:
            issuer = self.cluster.identities.apply(lambda ids: str(ids[0]["oidcs"][0]["issuer"]))
            oidc = aws.iam.OpenIdConnectProvider(
                f"{name}-oidc",
                url=issuer,
                client_id_lists=["sts.amazonaws.com"],
                tags=tags,
                opts=child,
            )
            self.oidc_provider_arn = oidc.arn
            self.oidc_issuer = issuer

        region = args.region
        if region is None:
            region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        self.kubeconfig = kubeconfig_secret(
            self.cluster.name,
            self.cluster.endpoint,
            self.cluster.certificate_authority.apply(lambda ca: str(ca["data"])),
            region,
        )
        self.provider = k8s.Provider(f"{name}-k8s", kubeconfig=self.kubeconfig, opts=cluster_child)
        self.core = ClusterCore(
            name=self.cluster_name,
            provider=self.provider,
            region=region,
            subnet_ids=args.subnet_ids,
            subnet_zones=args.subnet_zones,
            oidc_provider_arn=self.oidc_provider_arn,
        )
        self.system_nodes = SystemNodeGroup(
            f"{name}-system",
            SystemNodeGroupArgs(
                cluster=self.core,
                shape=args.system_shape,
                min_size=args.system_min,
                max_size=args.system_max,
                desired_size=args.system_desired,
                tags=tags,
            ),
            opts=cluster_child,
        )
        ebs_role = pod_identity_role(f"{name}-ebs-csi", [_EBS_CSI_POLICY], tags, self)
        self.addons: dict[str, aws.eks.Addon] = {}
        for addon in MANAGED_ADDONS:
            version = aws.eks.get_addon_version_output(
                addon_name=addon,
                kubernetes_version=args.version,
                opts=pulumi.InvokeOutputOptions(parent=self),
            ).version
            associations = None
            configuration = None
            if addon == "vpc-cni":
                # Without it, NetworkPolicies are accepted and never enforced.
                configuration = json.dumps({"enableNetworkPolicy": "true"})
            if addon == "aws-ebs-csi-driver":
                associations = [
                    aws.eks.AddonPodIdentityAssociationArgs(
                        role_arn=ebs_role.arn, service_account="ebs-csi-controller-sa"
                    )
                ]
            # Pod Identity must be there before an add-on whose pods rely on it.
            after = [self.system_nodes, *self.addons.values()] if addon != "vpc-cni" else []
            self.addons[addon] = aws.eks.Addon(
                f"{name}-{addon}",
                cluster_name=self.cluster.name,
                addon_name=addon,
                addon_version=version,
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="OVERWRITE",
                pod_identity_associations=associations,
                configuration_values=configuration,
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.cluster, *after]),
            )

        self.register_outputs(
            {
                "cluster_name": self.cluster_name,
                "endpoint": self.cluster.endpoint,
                "kubeconfig": self.kubeconfig,
                "oidc_provider_arn": self.oidc_provider_arn,
                "oidc_issuer": self.oidc_issuer,
            }
        )


def pod_identity(
    name: str,
    cluster_name: pulumi.Input[str],
    namespace: str,
    service_account: str,
    policy: pulumi.Input[str],
    tags: Mapping[str, str],
    parent: pulumi.Resource,
) -> list[pulumi.Resource]:
    """An AWS role with `policy` inline, bound to one Kubernetes service account through EKS
    Pod Identity. Returns what the service account's pods should wait for: they must find
    their role, and its permissions, when they first start."""
    child = pulumi.ResourceOptions(parent=parent)
    role = pod_identity_role(name, [], tags, parent)
    inline = aws.iam.RolePolicy(name, role=role.name, policy=policy, opts=child)
    association = aws.eks.PodIdentityAssociation(
        name,
        cluster_name=cluster_name,
        namespace=namespace,
        service_account=service_account,
        role_arn=role.arn,
        tags=dict(tags),
        opts=child,
    )
    return [inline, association]
