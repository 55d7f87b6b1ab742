"""The `fermion` command: one sub-app or command per noun, registered here.

Heavy modules (pulumi_aws, torch, even pydantic) are imported inside the commands, so that
`fermion --help` starts quickly.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from fermion.cli import image, models
from fermion.cli.bootstrap import bootstrap
from fermion.cli.console import closed_by_reader, err
from fermion.cli.doctor import doctor
from fermion.cli.help_format import hide_flag_types, reflow_help
from fermion.cli.outputs import outputs
from fermion.cli.plan import plan
from fermion.cli.serve import serve
from fermion.cli.shapes import shapes
from fermion.cli.stack_ops import destroy, preview, refresh, up
from fermion.cli.validate import validate
from fermion.environments.errors import FermionError


class _FermionGroup(TyperGroup):
    """The root group: turns fermion's own errors into a message on stderr and exit code 1."""

    # The context is left untyped: typer ships its own copy of click in newer releases and uses
    # click itself in older ones, and this override must match either.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            closed_by_reader()
        except FermionError as exc:
            _fail(str(exc))
        except Exception as exc:
            # The Automation API is imported only by the commands that drive Pulumi; when it was
            # never imported, the error cannot be one of its CommandErrors.
            automation = sys.modules.get("pulumi.automation.errors")
            if automation is not None and isinstance(exc, automation.CommandError):
                _fail(str(exc))
            raise


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(1)


hide_flag_types()
app = typer.Typer(
    cls=_FermionGroup,
    name="fermion",
    help="Stand up a self-hosted AI cloud in your own AWS account, and serve models on it.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        try:
            typer.echo(f"fermion {version('fermion')}")
        except PackageNotFoundError:
            typer.echo("fermion (not installed as a distribution)")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print fermion's version and exit."
        ),
    ] = False,
) -> None:
    """Stand up a self-hosted AI cloud in your own AWS account, and serve models on it."""


app.command("validate", rich_help_panel="Environments")(validate)
app.command("shapes", rich_help_panel="Environments")(shapes)
app.command("plan", rich_help_panel="Environments")(plan)
app.command("bootstrap", rich_help_panel="Environments")(bootstrap)
app.command("doctor", rich_help_panel="Environments")(doctor)
app.command("serve", rich_help_panel="Models")(serve)
app.add_typer(image.app, rich_help_panel="Models")
app.add_typer(models.app, rich_help_panel="Models")
app.command("preview", rich_help_panel="Stacks")(preview)
app.command("up", rich_help_panel="Stacks")(up)
app.command("destroy", rich_help_panel="Stacks")(destroy)
app.command("refresh", rich_help_panel="Stacks")(refresh)
app.command("outputs", rich_help_panel="Stacks")(outputs)
reflow_help(app)


def main() -> None:
    """Entry point of the `fermion` console script."""
    app()
