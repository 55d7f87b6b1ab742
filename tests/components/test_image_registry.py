from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from fermion.components.image_registry import (
    BUILD_CACHE_TAG,
    ImageRegistry,
    ImageRegistryArgs,
    lifecycle_policy,
)

from .conftest import Recorder, resolve, settle

ACCOUNT = "123456789012"
NAME = "fermion/runtime"
URL = f"{ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com/{NAME}"
REPO_ARN = f"arn:aws:ecr:us-west-2:{ACCOUNT}:repository/{NAME}"
KEY_ARN = f"arn:aws:kms:us-west-2:{ACCOUNT}:key/5b0e2d7c-9a41-4f3e-8c6d-2e1f0a9b7c35"
KEY_ID = "5b0e2d7c-9a41-4f3e-8c6d-2e1f0a9b7c35"
REPOSITORY = "aws:ecr/repository:Repository"
LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"


def _registry(mocks: Recorder, **overrides: Any) -> ImageRegistry:
    mocks.outputs["aws:kms/key:Key"] = {"arn": KEY_ARN, "keyId": KEY_ID}
    mocks.outputs[REPOSITORY] = {
        "repositoryUrl": URL,
        "arn": REPO_ARN,
        "registryId": ACCOUNT,
    }
    values: dict[str, Any] = {"repository": NAME, "tags": {"team": "ml"}}
    values.update(overrides)
    registry = ImageRegistry("images", ImageRegistryArgs(**values))
    resolve(registry.repository_url)
    settle()
    return registry


def _repository(mocks: Recorder) -> dict[str, Any]:
    (repository,) = mocks.of_type(REPOSITORY)
    return dict(repository.inputs)


def _rules(mocks: Recorder) -> list[dict[str, Any]]:
    (policy,) = mocks.of_type(LIFECYCLE)
    rules: list[dict[str, Any]] = json.loads(policy.inputs["policy"])["rules"]
    return rules


@dataclass(frozen=True)
class _Image:
    digest: str
    tags: tuple[str, ...]
    age_days: float


def _expired(rules: list[dict[str, Any]], images: list[_Image]) -> set[str]:
    """The digests ECR would expire, following its documented rule semantics.

    Each rule selects the images its tag selection matches and marks those past its count or
    age, oldest first; a marked image expires unless it matches the tag selection of a rule of
    higher priority.
    """

    def matches(selection: dict[str, Any], image: _Image) -> bool:
        status = selection["tagStatus"]
        if status == "any":
            return True
        if status == "untagged":
            return not image.tags
        prefixes = selection["tagPrefixList"]
        return all(any(tag.startswith(p) for tag in image.tags) for p in prefixes)

    expired: set[str] = set()
    earlier: list[dict[str, Any]] = []
    for rule in sorted(rules, key=lambda r: r["rulePriority"]):
        selection = rule["selection"]
        selected = sorted(
            (image for image in images if matches(selection, image)),
            key=lambda image: image.age_days,
        )
        if selection["countType"] == "imageCountMoreThan":
            marked = selected[selection["countNumber"] :]
        else:
            assert selection["countUnit"] == "days"
            marked = [image for image in selected if image.age_days > selection["countNumber"]]
        expired.update(
            image.digest for image in marked if not any(matches(e, image) for e in earlier)
        )
        earlier.append(selection)
    return expired


def test_the_repository_is_immutable_scanned_and_encrypted(mocks: Recorder) -> None:
    registry = _registry(mocks)
    repository = _repository(mocks)
    assert repository["name"] == NAME
    assert repository["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    # Every tag is immutable except the BuildKit cache, which each build rewrites.
    assert repository["imageTagMutabilityExclusionFilters"] == [
        {"filter": BUILD_CACHE_TAG, "filterType": "WILDCARD"}
    ]
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repository["encryptionConfigurations"] == [{"encryptionType": "KMS", "kmsKey": KEY_ARN}]
    assert repository["forceDelete"] is False
    assert repository["tags"] == {"team": "ml"}
    (key,) = mocks.of_type("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    assert 7 <= key.inputs["deletionWindowInDays"] <= 30
    (alias,) = mocks.of_type("aws:kms/alias:Alias")
    assert alias.inputs == {"name": "alias/fermion/ecr/fermion/runtime", "targetKeyId": KEY_ID}
    assert resolve(registry.repository_url) == URL
    assert resolve(registry.repository_arn) == REPO_ARN
    assert resolve(registry.registry_id) == ACCOUNT
    assert resolve(registry.repository_name) == NAME


def test_the_build_cache_tag_matches_what_runtime_images_push() -> None:
    # RuntimeImage exports its cache to `<repository>:buildcache`.
    assert BUILD_CACHE_TAG == "buildcache"


def test_tags_are_mutable_when_asked(mocks: Recorder) -> None:
    _registry(mocks, immutable_tags=False, scan_on_push=False, force_delete=True)
    repository = _repository(mocks)
    assert repository["imageTagMutability"] == "MUTABLE"
    assert "imageTagMutabilityExclusionFilters" not in repository
    assert repository["imageScanningConfiguration"] == {"scanOnPush": False}
    assert repository["forceDelete"] is True


def test_the_lifecycle_policy_applies_to_the_repository(mocks: Recorder) -> None:
    _registry(mocks, keep_images=7)
    (policy,) = mocks.of_type(LIFECYCLE)
    assert policy.inputs["repository"] == NAME
    assert _rules(mocks) == json.loads(lifecycle_policy(7))["rules"]


def test_the_lifecycle_rules_are_in_priority_order(mocks: Recorder) -> None:
    _registry(mocks)
    rules = _rules(mocks)
    priorities = [rule["rulePriority"] for rule in rules]
    assert priorities == sorted(set(priorities))
    assert all(rule["action"] == {"type": "expire"} for rule in rules)
    assert all(rule["description"] for rule in rules)
    # ECR requires a tagStatus "any" rule to be evaluated last.
    assert [rule["selection"]["tagStatus"] for rule in rules][-1] == "any"


@pytest.mark.parametrize("keep", [1, 50, 500])
def test_the_count_rule_keeps_the_newest_images(mocks: Recorder, keep: int) -> None:
    _registry(mocks, keep_images=keep)
    (count,) = [r for r in _rules(mocks) if r["selection"]["tagStatus"] == "any"]
    assert count["selection"] == {
        "tagStatus": "any",
        "countType": "imageCountMoreThan",
        "countNumber": keep,
    }


def test_untagged_images_expire_after_a_day(mocks: Recorder) -> None:
    _registry(mocks)
    (untagged,) = [r for r in _rules(mocks) if r["selection"]["tagStatus"] == "untagged"]
    assert untagged["selection"] == {
        "tagStatus": "untagged",
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": 1,
    }


def test_the_build_cache_has_its_own_rule_ahead_of_the_others(mocks: Recorder) -> None:
    _registry(mocks)
    rules = _rules(mocks)
    first = min(rules, key=lambda r: r["rulePriority"])
    assert first["selection"] == {
        "tagStatus": "tagged",
        "tagPrefixList": [BUILD_CACHE_TAG],
        "countType": "imageCountMoreThan",
        "countNumber": 1,
    }


def test_expiry_keeps_the_cache_and_the_newest_images() -> None:
    rules = json.loads(lifecycle_policy(keep_images=3))["rules"]
    tagged = [_Image(f"sha256:{n}", (f"tag{n}",), age_days=n + 2) for n in range(6)]
    cache = _Image("sha256:cache", (BUILD_CACHE_TAG,), age_days=400)
    stale = _Image("sha256:stale", (), age_days=1.5)
    fresh = _Image("sha256:fresh", (), age_days=0.5)
    expired = _expired(rules, [*tagged, cache, stale, fresh])
    assert "sha256:cache" not in expired
    assert "sha256:fresh" not in expired
    assert "sha256:stale" in expired
    # Untagged images count toward the three kept, so only the newest tagged image stays.
    assert expired - {"sha256:stale"} == {f"sha256:{n}" for n in range(1, 6)}


def test_the_cache_survives_even_when_one_image_is_kept() -> None:
    rules = json.loads(lifecycle_policy(keep_images=1))["rules"]
    images = [
        _Image("sha256:new", ("abc",), age_days=0),
        _Image("sha256:old", ("def",), age_days=30),
        _Image("sha256:cache", (BUILD_CACHE_TAG,), age_days=90),
    ]
    assert _expired(rules, images) == {"sha256:old"}


def test_without_the_cache_rule_the_cache_would_expire() -> None:
    # The check above is only worth something if the count rule alone would take the cache.
    rules = json.loads(lifecycle_policy(keep_images=1))["rules"]
    unguarded = [r for r in rules if r["selection"].get("tagPrefixList") != [BUILD_CACHE_TAG]]
    images = [
        _Image("sha256:new", ("abc",), age_days=0),
        _Image("sha256:cache", (BUILD_CACHE_TAG,), age_days=90),
    ]
    assert _expired(unguarded, images) == {"sha256:cache"}


def test_children_are_parented_to_the_component(mocks: Recorder) -> None:
    registry = _registry(mocks)
    for child in (registry.key, registry.key_alias, registry.repository, registry.lifecycle_policy):
        assert "fermion:index:ImageRegistry$" in resolve(child.urn)
    assert resolve(registry.repository.urn).endswith(
        "fermion:index:ImageRegistry$aws:ecr/repository:Repository::images"
    )
    assert resolve(registry.urn).endswith("fermion:index:ImageRegistry::images")
