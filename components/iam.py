"""IAM roles that an AWS service assumes, as the components create them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws


def trust_policy(service: str, actions: Sequence[str] = ("sts:AssumeRole",)) -> str:
    """The assume-role policy that lets `service` (e.g. ec2.amazonaws.com) take a role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": actions[0] if len(actions) == 1 else list(actions),
                }
            ],
        }
    )


def service_role(
    name: str,
    service: str,
    policy_arns: Sequence[str],
    tags: Mapping[str, str],
    parent: pulumi.Resource,
    actions: Sequence[str] = ("sts:AssumeRole",),
) -> tuple[aws.iam.Role, list[aws.iam.RolePolicyAttachment]]:
    """A role that `service` assumes, with managed policies attached (each a child of the role)."""
    role = aws.iam.Role(
        name,
        assume_role_policy=trust_policy(service, actions),
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    attachments = [
        aws.iam.RolePolicyAttachment(
            f"{name}-{i}",
            role=role.name,
            policy_arn=policy,
            opts=pulumi.ResourceOptions(parent=role),
        )
        for i, policy in enumerate(policy_arns)
    ]
    return role, attachments
