"""ImageRegistry: the ECR repository that holds fermion's runtime images."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from fermion.components.kms import rotating_key

# RuntimeImage keeps its BuildKit cache in the repository under this tag.
BUILD_CACHE_TAG = "buildcache"


@dataclass(frozen=True)
class ImageRegistryArgs:
    """How the image repository is set up.

    The newest `keep_images` tagged images are kept and older ones expire; untagged images
    expire after `untagged_days`. `force_delete` lets `pulumi destroy` remove a repository that
    still holds images.
    """

    repository: str
    scan_on_push: bool = True
    immutable_tags: bool = True
    keep_images: int = 50
    untagged_days: int = 1
    force_delete: bool = False
    key_deletion_window_days: int = 30
    tags: Mapping[str, str] = field(default_factory=dict)


class ImageRegistry(pulumi.ComponentResource):
    """An ECR repository for runtime images, encrypted with its own KMS key.

    Tags are immutable by default, so a tag always names the image it was first pushed as;
    the `buildcache` tag alone stays mutable, because every build rewrites the cache. A
    lifecycle policy bounds the repository's size without ever expiring the cache. Outputs:
    `repository_url`, `repository_arn`, `registry_id` and `repository_name`.
    """

    repository_url: pulumi.Output[str]
    repository_arn: pulumi.Output[str]
    registry_id: pulumi.Output[str]
    repository_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: ImageRegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fermion:index:ImageRegistry", name, None, opts)
        tags = dict(args.tags)

        self.key = rotating_key(
            name,
            f"Encrypts the images in fermion's ECR repository {args.repository}",
            args.key_deletion_window_days,
            tags,
            self,
        )
        # Repository names may hold dots, which alias names may not.
        alias = "alias/fermion/ecr/" + args.repository.replace(".", "-")
        self.key_alias = aws.kms.Alias(
            f"{name}-key",
            name=alias,
            target_key_id=self.key.key_id,
            opts=pulumi.ResourceOptions(parent=self),
        )
        if args.immutable_tags:
            # BuildKit pushes the cache to the same tag on every build, which an immutable
            # repository would refuse.
            mutability = "IMMUTABLE_WITH_EXCLUSION"
            exclusions: list[aws.ecr.RepositoryImageTagMutabilityExclusionFilterArgs] | None = [
                aws.ecr.RepositoryImageTagMutabilityExclusionFilterArgs(
                    filter=BUILD_CACHE_TAG, filter_type="WILDCARD"
                )
            ]
        else:
            mutability = "MUTABLE"
            exclusions = None
        self.repository = aws.ecr.Repository(
            name,
            name=args.repository,
            image_tag_mutability=mutability,
            image_tag_mutability_exclusion_filters=exclusions,
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                scan_on_push=args.scan_on_push
            ),
            encryption_configurations=[
                aws.ecr.RepositoryEncryptionConfigurationArgs(
                    encryption_type="KMS", kms_key=self.key.arn
                )
            ],
            force_delete=args.force_delete,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.lifecycle_policy = aws.ecr.LifecyclePolicy(
            name,
            repository=self.repository.name,
            policy=lifecycle_policy(args.keep_images, args.untagged_days),
            opts=pulumi.ResourceOptions(parent=self),
        )

        self.repository_url = self.repository.repository_url
        self.repository_arn = self.repository.arn
        self.registry_id = self.repository.registry_id
        self.repository_name = self.repository.name
        self.register_outputs(
            {
                "repository_url": self.repository_url,
                "repository_arn": self.repository_arn,
                "registry_id": self.registry_id,
                "repository_name": self.repository_name,
            }
        )


def lifecycle_policy(keep_images: int, untagged_days: int = 1) -> str:
    """The repository's lifecycle policy (JSON).

    ECR evaluates rules by priority, and an image that matches one rule's tag selection is
    never expired by a later rule. So the cache rule, first, shields `buildcache`; untagged
    images (old cache manifests among them) expire next; and the last rule expires all but the
    newest `keep_images` images. The cache and recent untagged images count toward that number,
    but that rule cannot expire them.
    """
    days = "day" if untagged_days == 1 else "days"
    rules: list[dict[str, Any]] = [
        {
            "rulePriority": 1,
            "description": f"Keep the BuildKit cache ({BUILD_CACHE_TAG})",
            "selection": {
                "tagStatus": "tagged",
                "tagPrefixList": [BUILD_CACHE_TAG],
                "countType": "imageCountMoreThan",
                "countNumber": 1,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": f"Expire untagged images after {untagged_days} {days}",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": untagged_days,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 3,
            "description": f"Keep the newest {keep_images} images",
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": keep_images,
            },
            "action": {"type": "expire"},
        },
    ]
    return json.dumps({"rules": rules}, indent=2)
