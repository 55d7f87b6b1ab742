"""VPC flow logs: every flow of a new network, kept in CloudWatch Logs for a set time."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

from fermion.components.iam import trust_policy


def vpc_flow_log(
    name: str,
    vpc: aws.ec2.Vpc,
    cluster_name: str,
    retention_days: int,
    tags: Mapping[str, pulumi.Input[str]],
    parent: pulumi.Resource,
) -> aws.ec2.FlowLog:
    """A flow log of all the VPC's traffic to the log group `/aws/vpc-flow-logs/<cluster>`,
    written by a role that may write to that group only. All are children of `parent`."""
    child = pulumi.ResourceOptions(parent=parent)
    group = aws.cloudwatch.LogGroup(
        f"{name}-flow-logs",
        name=f"/aws/vpc-flow-logs/{cluster_name}",
        retention_in_days=retention_days,
        tags=dict(tags),
        opts=child,
    )
    role = aws.iam.Role(
        f"{name}-flow-logs",
        assume_role_policy=trust_policy("vpc-flow-logs.amazonaws.com"),
        tags=dict(tags),
        opts=child,
    )
    aws.iam.RolePolicy(
        f"{name}-flow-logs",
        role=role.id,
        policy=pulumi.Output.json_dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": [
                            "logs:CreateLogStream",
                            "logs:PutLogEvents",
                            "logs:DescribeLogStreams",
                        ],
                        "Resource": [group.arn, group.arn.apply(lambda arn: f"{arn}:*")],
                    },
                    {
                        # Listing log groups cannot be scoped to one group.
                        "Effect": "Allow",
                        "Action": "logs:DescribeLogGroups",
                        "Resource": "*",
                    },
                ],
            }
        ),
        opts=child,
    )
    return aws.ec2.FlowLog(
        f"{name}-flow-logs",
        vpc_id=vpc.id,
        traffic_type="ALL",
        log_destination_type="cloud-watch-logs",
        log_destination=group.arn,
        iam_role_arn=role.arn,
        tags=dict(tags),
        opts=child,
    )
