"""`--manifests DIR`: Kubernetes objects and Helm releases written as YAML, nothing else lost."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fermion.stacks.manifests import (
    HELM_RELEASE,
    MARKER,
    ManifestFolderError,
    write_manifests,
)
from fermion.stacks.plan import PlannedResource


def _resources() -> list[PlannedResource]:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "embed", "namespace": "models"},
        "spec": {"replicas": 1},
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "models"}}
    release = {
        "name": "keda",
        "chart": "keda",
        "version": "2.20.1",
        "namespace": "keda",
        "repositoryOpts": {"repo": "https://kedacore.github.io/charts"},
        "values": {"resources": {}},
    }
    return [
        PlannedResource("urn:d", "kubernetes:apps/v1:Deployment", "embed", None, deployment, True),
        PlannedResource("urn:n", "kubernetes:core/v1:Namespace", "models", None, namespace, True),
        PlannedResource("urn:k", HELM_RELEASE, "keda", None, release, True),
        PlannedResource("urn:p", "pulumi:providers:kubernetes", "k8s", None, {}, True),
        PlannedResource(
            "urn:v", "aws:ec2/vpc:Vpc", "vpc", None, {"cidrBlock": "10.0.0.0/16"}, True
        ),
    ]


def test_objects_are_written_namespaces_first_and_releases_apart(tmp_path: Path) -> None:
    written = write_manifests(_resources(), tmp_path / "out")
    assert [p.name for p in written.objects] == [
        "001-namespace-models.yaml",
        "002-deployment-models-embed.yaml",
    ]
    deployment = yaml.safe_load(written.objects[1].read_text())
    assert deployment["kind"] == "Deployment" and deployment["spec"]["replicas"] == 1
    (release,) = written.releases
    text = release.read_text()
    assert text.startswith("# Helm release keda: chart keda 2.20.1 from https://kedacore")
    assert yaml.safe_load(text)["values"] == {"resources": {}}


def test_a_folder_that_is_not_fermions_is_refused_and_kept(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(ManifestFolderError, match="is not empty and was not written by"):
        write_manifests(_resources(), folder)
    assert (folder / "notes.txt").read_text() == "keep me"


def test_a_file_in_the_way_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file.yaml"
    target.write_text("x")
    with pytest.raises(ManifestFolderError, match="exists and is not a folder"):
        write_manifests(_resources(), target)
    assert target.read_text() == "x"


def test_a_second_run_replaces_the_first(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    write_manifests(_resources(), folder)
    (folder / "001-stale.yaml").write_text("old")
    written = write_manifests(_resources()[:1], folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [MARKER, *(p.name for p in written.objects)]
    )
