"""`fermion plan --manifests DIR`: the planned Kubernetes objects and Helm releases as YAML files.

Each Kubernetes object is written as it was registered, one file each, numbered in the order the
program declared them. Each Helm release gets a file under `helm/` with its chart, pinned
version, repository and values. The folder is fermion's: a marker file says so, and a folder
without it that holds anything is refused rather than emptied.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fermion.environments.errors import FermionError
from fermion.stacks.planned import PlannedResource

MARKER = ".fermion-manifests"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
_FIRST = {"Namespace": 0, "CustomResourceDefinition": 1}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ManifestFolderError(FermionError):
    """A folder `--manifests` would have to overwrite without knowing it is its own."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(
            f"manifests folder {path} {problem}. Pick a new or empty folder, or one that an "
            "earlier `fermion plan --manifests` wrote"
        )


@dataclass(frozen=True)
class WrittenManifests:
    """What `write_manifests` wrote."""

    folder: Path
    objects: list[Path]
    releases: list[Path]


def is_kubernetes_object(resource: PlannedResource) -> bool:
    return resource.type.startswith("kubernetes:") and resource.type != HELM_RELEASE


def write_manifests(resources: Sequence[PlannedResource], folder: Path) -> WrittenManifests:
    """Write every Kubernetes object and Helm release in `resources` under `folder`."""
    _prepare(folder)
    objects: list[Path] = []
    releases: list[Path] = []
    # Namespaces and CRDs first, so `kubectl apply -f DIR` meets them before what they hold.
    ranked = sorted(resources, key=lambda r: _FIRST.get(str(r.inputs.get("kind")), 2))
    for resource in ranked:
        if resource.type == HELM_RELEASE:
            path = folder / "helm" / f"{_safe(resource.name)}.yaml"
            path.parent.mkdir(exist_ok=True)
            path.write_text(_release_document(resource), encoding="utf-8")
            releases.append(path)
        elif is_kubernetes_object(resource):
            path = folder / f"{len(objects) + 1:03d}-{_object_file_name(resource)}.yaml"
            path.write_text(_dump(resource.inputs), encoding="utf-8")
            objects.append(path)
    return WrittenManifests(folder=folder, objects=objects, releases=releases)


def _prepare(folder: Path) -> None:
    if folder.exists():
        if not folder.is_dir():
            raise ManifestFolderError(folder, "exists and is not a folder")
        if any(folder.iterdir()) and not (folder / MARKER).is_file():
            raise ManifestFolderError(folder, "is not empty and was not written by fermion plan")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text(
        "Written by `fermion plan --manifests`; the next run replaces this folder.\n",
        encoding="utf-8",
    )


def _object_file_name(resource: PlannedResource) -> str:
    inputs = resource.inputs
    found = inputs.get("metadata")
    metadata: dict[str, Any] = found if isinstance(found, dict) else {}
    kind = str(inputs.get("kind") or resource.type.rsplit(":", 1)[-1])
    name = str(metadata.get("name") or resource.name)
    namespace = metadata.get("namespace")
    parts = [kind.lower(), *([str(namespace)] if namespace else []), name]
    return _safe("-".join(parts))


def _release_document(resource: PlannedResource) -> str:
    inputs = resource.inputs
    repository = (inputs.get("repositoryOpts") or {}).get("repo")
    header = (
        f"# Helm release {inputs.get('name', resource.name)}: chart {inputs.get('chart')} "
        f"{inputs.get('version')} from {repository}, namespace {inputs.get('namespace')}\n"
    )
    return header + _dump(inputs)


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_") or "object"
