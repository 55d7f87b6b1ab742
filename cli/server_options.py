"""The serving runtime's options as typer options.

`fermion.runtime_images.server.options.OPTIONS` defines the server's flags once; the image's
entrypoint builds its argparse parser from it, and this adapter gives a typer command the same
flags with the same help, so `fermion serve` offers exactly what the server does.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import typer

from fermion.runtime_images.server.options import OPTIONS, ServerOption

ServerOptionValues = dict[str, Any]
"""The server options a command was given, keyed by config field; None where not given."""

_PANELS = {"model": "Model", "server": "Server"}


def _annotation(option: ServerOption, default: object) -> Any:
    value: Any = Literal[option.choices] if option.choices else option.type
    if option.repeatable:
        value = list[value]
    flag = option.flag
    if option.negatable:
        flag = f"{flag}/--no-{flag.removeprefix('--')}"
    info = typer.Option(
        flag,
        help=option.help_text(default),
        metavar=option.metavar,
        show_default=False,  # the help ends with the default
        rich_help_panel=_PANELS[option.scope],
    )
    return Annotated[value | None, info]


def with_server_options(
    defaults: Mapping[str, object] | None = None,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a typer command every server option, after its own parameters.

    The command declares a parameter `options: ServerOptionValues` and receives the options'
    values there, keyed by config field, None where not given unless `defaults` (keyed by field
    too) has a default for this command.
    """
    chosen = dict(defaults or {})

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "options"]
        clash = {p.name for p in own} & {o.field for o in OPTIONS}
        if clash or "options" not in signature.parameters:
            raise TypeError(f"{command.__name__} must take `options` and none of {sorted(clash)}")
        added = [
            inspect.Parameter(
                option.field,
                inspect.Parameter.KEYWORD_ONLY,
                default=chosen.get(option.field),
                annotation=_annotation(option, chosen.get(option.field)),
            )
            for option in OPTIONS
        ]

        @functools.wraps(command)
        def wrapper(**values: Any) -> None:
            options = {option.field: values.pop(option.field) for option in OPTIONS}
            command(**values, options=options)

        parameters = [*own, *added]
        # typer reads a command's parameters from its signature and its annotations.
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate


__all__ = ["ServerOptionValues", "with_server_options"]
