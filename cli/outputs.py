"""`fermion outputs ENV`: the stack's outputs (kubeconfig, endpoints, bucket, registry)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.markup import escape

from fermion.cli.console import out, print_json
from fermion.cli.options import StacksDir


def outputs(
    env: Annotated[
        str, typer.Argument(help="Environment name: the stack ENV.", show_default=False)
    ],
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
    """Show the outputs of ENV's stack from its last `fermion up`: endpoints, bucket, registry,
    kubeconfig."""
    from fermion.cli.stack_target import check_environment, open_environment
    from fermion.stacks.operations import outputs_json

    opened = open_environment(check_environment(env, stacks_dir), create=False, aws=None)
    values = outputs_json(opened.stack.outputs(), show_secrets)
    if as_json:
        print_json(values)
        return
    out.print(f"[dim]{escape(opened.describe())}[/]", soft_wrap=True)
    print_outputs(values)


def print_outputs(values: Mapping[str, Any]) -> None:
    """Outputs for people: one `name: value` line each, nested objects indented."""
    if not values:
        out.print("[bold]outputs[/]: none (nothing deployed, or the program exports nothing)")
        return
    out.print("[bold]outputs[/]")
    for key, value in values.items():
        _print_value(key, value, 1)


def _print_value(key: str, value: object, depth: int) -> None:
    indent = "  " * depth
    if isinstance(value, Mapping) and value:
        out.print(f"{indent}[dim]{escape(key)}[/]")
        for inner, item in value.items():
            _print_value(str(inner), item, depth + 1)
        return
    text = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    if "\n" in text:
        # A kubeconfig, for one: keep its lines as they are, under the key.
        out.print(f"{indent}[dim]{escape(key)}:[/]")
        out.print(escape(text), soft_wrap=True)
        return
    out.print(f"{indent}[dim]{escape(key)}:[/] {escape(text or 'none')}", soft_wrap=True)
