"""The Pulumi program and what runs it offline: the offline plan, its cost and its manifests.

This folder also holds the `Pulumi.<env>.yaml` files of the environments that ship with fermion
(Pulumi.yaml's `stackConfigDir`). The Pulumi program itself is `__main__.py` (Pulumi.yaml's
`main`). The environment model it reads lives one floor down, in `fermion.environments`.
"""

from __future__ import annotations

from pathlib import Path

STACKS_DIR = Path(__file__).parent
"""The folder of the environments that ship with fermion: the last place the CLI looks."""

__all__ = ["STACKS_DIR"]
