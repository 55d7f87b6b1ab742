"""`fermion outputs ENV`: the stack's outputs (kubeconfig, endpoints, bucket, registry)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from fermion.cli.console import out, print_json, print_outputs
from fermion.cli.options import StackEnv, StacksDir


def outputs(
    env: StackEnv,
    stacks_dir: StacksDir = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the outputs as one JSON object, for scripts.")
    ] = False,
    show_secrets: Annotated[
        bool,
        typer.Option(
            "--show-secrets",
            help="Show secret outputs (the kubeconfig, for one) instead of \\[secret].",
        ),
    ] = False,
) -> None:
    """Show the outputs of ENV's stack from its last `fermion up`.

    Endpoints, bucket, registry and kubeconfig.
    """
    from fermion.cli.stack_target import check_environment, open_environment
    from fermion.stacks.operations import outputs_json

    opened = open_environment(check_environment(env, stacks_dir), create=False, aws=None)
    values = outputs_json(opened.stack.outputs(), show_secrets)
    if as_json:
        print_json(values)
        return
    out.print(f"[dim]{escape(opened.describe())}[/]", soft_wrap=True)
    print_outputs(values)
