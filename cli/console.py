"""Where the CLI writes: rich output for people on stdout, errors on stderr, JSON for scripts."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """Write `data` as indented JSON on stdout, for scripts."""
    typer.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def usd(amount: float) -> str:
    """A dollar amount per hour, with cents, or more digits below a dollar."""
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.4f}"
