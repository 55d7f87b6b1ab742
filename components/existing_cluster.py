"""ExistingCluster: an EKS cluster made elsewhere, for stacks that add node pools, add-ons or
services to it."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from fermion.components.cluster_core import ClusterCore
from fermion.components.kubeconfig import kubeconfig_secret


class ExistingCluster(pulumi.ComponentResource):
    """An EKS cluster made elsewhere, looked up by name.

    Its `core` is what components take from `Cluster`, so node pools, add-ons and services can
    join a cluster this stack does not own. Node pools go in `subnet_ids` (their zones are
    looked up unless `subnet_zones` gives them, in the same order); without `subnet_ids` they go
    in the subnets the cluster's control plane uses, which should then all be private. The
    region is the provider's unless given. It creates nothing in AWS; the caller needs access to
    the cluster.

    Outputs: `cluster_name`, `endpoint`, `version`, `kubeconfig` (secret), `provider` and `core`.
    """

    cluster_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    version: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider
    core: ClusterCore

    def __init__(
        self,
        name: str,
        cluster_name: pulumi.Input[str],
        region: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
        *,
        subnet_ids: pulumi.Input[Sequence[str]] | None = None,
        subnet_zones: pulumi.Input[Sequence[str]] | None = None,
    ) -> None:
        super().__init__("fermion:index:ExistingCluster", name, None, opts)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        found = aws.eks.get_cluster_output(name=cluster_name, region=region, opts=invoke)
        if region is None:
            region = aws.get_region_output(opts=invoke).region
        self.cluster_name = found.name
        self.endpoint = found.endpoint
        self.version = found.version
        self.kubeconfig = kubeconfig_secret(
            found.name,
            found.endpoint,
            found.certificate_authorities.apply(lambda cas: str(cas[0].data)),
            region,
        )
        self.provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=self.kubeconfig, opts=pulumi.ResourceOptions(parent=self)
        )
        ids: pulumi.Output[list[str]]
        if subnet_ids is None:
            ids = found.vpc_config.apply(lambda vpc: list(vpc.subnet_ids) if vpc else [])
        else:
            ids = pulumi.Output.from_input(subnet_ids).apply(list)
        zones: pulumi.Input[Sequence[str]]
        if subnet_zones is None:
            zones = ids.apply(
                lambda names: pulumi.Output.all(
                    *[aws.ec2.get_subnet_output(id=i, opts=invoke).availability_zone for i in names]
                )
            )
        else:
            zones = subnet_zones
        self.core = ClusterCore(
            name=self.cluster_name,
            provider=self.provider,
            region=region,
            subnet_ids=ids,
            subnet_zones=zones,
            oidc_provider_arn=None,
        )
        self.register_outputs(
            {"cluster_name": self.cluster_name, "endpoint": self.endpoint, "version": self.version}
        )
