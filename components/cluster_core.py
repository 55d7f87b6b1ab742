"""ClusterCore: what a component that runs on a cluster needs to know about it, as one object.

Like pulumi-eks's `CoreData`: `Cluster` and `ExistingCluster` each produce one (`.core`), and
node pools, the cluster add-ons and inference services take it in their Args, instead of a
cluster name, a provider, subnets, their zones and a region passed one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi


@dataclass(frozen=True)
class ClusterCore:
    """The facts about one EKS cluster that the components built on it share.

    `name` is the EKS cluster's name and `provider` a pulumi-kubernetes Provider for it.
    `subnet_ids` and `subnet_zones` run in parallel (the zone of each subnet): the private
    subnets node groups go in. `region` is the cluster's AWS region. `oidc_provider_arn` is
    the cluster's IAM OIDC provider, when it has one for IRSA; otherwise None, and workloads
    get their roles through EKS Pod Identity.
    """

    name: pulumi.Input[str]
    provider: pulumi.ProviderResource
    region: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[str]]
    subnet_zones: pulumi.Input[Sequence[str]]
    oidc_provider_arn: pulumi.Input[str] | None = None
