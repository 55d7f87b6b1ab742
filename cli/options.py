"""Option types that several commands share, and what they resolve to."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

StackEnv = Annotated[
    str,
    typer.Argument(
        help="Environment name: the stack ENV, configured by Pulumi.<ENV>.yaml.",
        show_default=False,
    ),
]
"""The ENV argument of the commands that work on an environment's stack or its store."""

StacksDir = Annotated[
    Path | None,
    typer.Option(
        "--stacks-dir",
        help="Folder of Pulumi.<env>.yaml files. Default: $FERMION_STACKS_DIR, else the "
        "stackConfigDir of the fermion Pulumi.yaml above the working folder, else the "
        "environments that ship with fermion.",
        show_default=False,
    ),
]


def stacks_folder(explicit: Path | None) -> Path:
    """The folder `--stacks-dir` names, else the one found from the environment and the working
    folder, else the environments that ship with fermion."""
    from fermion.environments.stack_files import find_stacks_dir
    from fermion.stacks import STACKS_DIR

    return find_stacks_dir(explicit, STACKS_DIR)
