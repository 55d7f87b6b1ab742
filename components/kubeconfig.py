"""The kubeconfig of an EKS cluster, for `Cluster` and `ExistingCluster` alike."""

from __future__ import annotations

import json

import pulumi


def kubeconfig_secret(
    cluster_name: pulumi.Input[str],
    endpoint: pulumi.Input[str],
    certificate_data: pulumi.Input[str],
    region: pulumi.Input[str],
) -> pulumi.Output[str]:
    """The cluster's kubeconfig as a secret Output."""
    return pulumi.Output.secret(
        pulumi.Output.all(cluster_name, endpoint, certificate_data, region).apply(
            lambda parts: kubeconfig(*parts)
        )
    )


def kubeconfig(cluster_name: str, endpoint: str, certificate_data: str, region: str) -> str:
    """A kubeconfig that authenticates with `aws eks get-token` (the caller's AWS identity)."""
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": [
                "eks",
                "get-token",
                "--cluster-name",
                cluster_name,
                "--region",
                region,
                "--output",
                "json",
            ],
        }
    }
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": cluster_name,
                    "cluster": {"server": endpoint, "certificate-authority-data": certificate_data},
                }
            ],
            "contexts": [
                {"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}
            ],
            "current-context": cluster_name,
            "users": [{"name": cluster_name, "user": user}],
        },
        indent=2,
    )
