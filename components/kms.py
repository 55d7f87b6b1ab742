"""KMS keys for fermion's components: one key per store, rotated yearly by AWS."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws


def rotating_key(
    name: str,
    description: str,
    deletion_window_days: int,
    tags: Mapping[str, str],
    parent: pulumi.Resource,
) -> aws.kms.Key:
    """A symmetric KMS key with automatic rotation, a child of `parent`."""
    return aws.kms.Key(
        f"{name}-key",
        description=description,
        enable_key_rotation=True,
        deletion_window_in_days=deletion_window_days,
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=parent),
    )
