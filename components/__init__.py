"""Pulumi components for a fermion environment: network, cluster, GPU node pools, model store,
image registry, runtime images and inference services."""

from __future__ import annotations

__all__: list[str] = []
