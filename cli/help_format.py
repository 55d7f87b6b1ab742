"""Help that shows a flag as a flag.

typer's rich help (since it vendored click) prints every option's type beside it, flags
included: `--json <bool>`, `--help <bool>`, as if they took a value. They take none, and
click's plain help and older typer releases print no type for them; fermion's help does the same.
"""

from __future__ import annotations

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
