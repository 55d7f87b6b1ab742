"""Where the CLI writes: rich output for people on stdout, errors on stderr, JSON for scripts."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any, NoReturn, TextIO

import typer
from rich.console import Console
from rich.markup import escape

# Output that goes to a file or a pipe keeps every type, name and number whole: rich would
# otherwise lay it out for an 80-column terminal and cut or fold it.
_UNWRAPPED = 100_000


def _width(stream: TextIO) -> int | None:
    """rich's own choice on a terminal, or where $COLUMNS says; no limit anywhere else."""
    if os.environ.get("COLUMNS") or stream.isatty():
        return None
    return _UNWRAPPED


def closed_by_reader() -> NoReturn:
    """Exit 0 once a reader such as `head` has closed stdout: it has what it asked for."""
    # Python's own advice: point stdout at /dev/null, so the flush at exit cannot fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(0)


def _on_broken_pipe(console: Console) -> None:
    if not console.quiet:
        closed_by_reader()


# rich's hook for a closed stdout exits 1, which fails `fermion plan | head` under pipefail.
# Set on the class, so typer's own help consoles behave the same as fermion's.
Console.on_broken_pipe = _on_broken_pipe  # type: ignore[method-assign,assignment]

out = Console(highlight=False, width=_width(sys.stdout))
err = Console(stderr=True, highlight=False, width=_width(sys.stderr))


def print_json(data: Any) -> None:
    """Write `data` as indented JSON on stdout, for scripts."""
    typer.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def usd(amount: float) -> str:
    """A dollar amount per hour, with cents, or more digits below a dollar."""
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.4f}"


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
