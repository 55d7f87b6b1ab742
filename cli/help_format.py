"""Help that shows a flag as a flag, and a docstring's paragraphs as paragraphs.

typer's rich help (since it vendored click) prints every option's type beside it, flags
included: `--json <bool>`, `--help <bool>`, as if they took a value. They take none, and
click's plain help and older typer releases print no type for them; fermion's help does the same.

In its rich markup mode typer also keeps a docstring's line breaks, so a paragraph wrapped at
100 columns in the source breaks mid-sentence at 80 in a terminal. Commands get their docstring
with each paragraph on one line, which the terminal then wraps.
"""

from __future__ import annotations

import inspect
from typing import Any


def hide_flag_types() -> None:
    """Make typer's rich help print no type beside a flag. Safe to call more than once, and a
    no-op on typer releases without the per-option type column."""
    from typer import core

    option = getattr(core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if option is None or shown is None or getattr(shown, "hides_flags", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if self.is_flag:
            return None
        result: str | None = shown(self, ctx)
        return result

    display_type_rich.hides_flags = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich


__all__ = ["hide_flag_types"]


def reflowed(doc: str) -> str:
    """`doc` with each paragraph's lines joined into one."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def reflow_help(app: Any) -> None:
    """Give every command of a typer app (and of its sub-apps) its docstring reflowed, unless
    it was given help of its own."""
    for command in app.registered_commands:
        if command.help is None and command.callback is not None and command.callback.__doc__:
            command.help = reflowed(command.callback.__doc__)
    for group in app.registered_groups:
        reflow_help(group.typer_instance)
