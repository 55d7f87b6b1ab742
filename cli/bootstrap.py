"""`fermion bootstrap ENV`: make the state bucket and secrets key in your own AWS account."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from fermion.cli.console import out, print_json
from fermion.cli.options import StacksDir, stacks_folder

_MARKS = {
    "created": "[green]created[/]",
    "changed": "[yellow]changed[/]",
    "unchanged": "[dim]ok[/]",
}


def bootstrap(
    env: Annotated[
        str,
        typer.Argument(
            help="Environment name: its Pulumi.<ENV>.yaml gives the region.", show_default=False
        ),
    ],
    stacks_dir: StacksDir = None,
    bucket: Annotated[
        str | None,
        typer.Option(
            "--bucket",
            help="Name of the state bucket. Default: fermion-state-<account>-<region>.",
            show_default=False,
        ),
    ] = None,
    adopt: Annotated[
        bool,
        typer.Option(
            "--adopt",
            help="Take on a bucket or KMS key of that name that fermion did not make: tag it "
            "and apply fermion's settings to it.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print what was made or found, and the record, as JSON.")
    ] = False,
) -> None:
    """Make the S3 state bucket and KMS secrets key for ENV in your AWS account, and record them.

    Safe to run again: it changes only what differs, and says when nothing did.
    """
    from fermion.environments.stack_files import load_environment
    from fermion.stacks.aws_lookups import connect
    from fermion.stacks.backend import choose_backend
    from fermion.stacks.bootstrap import bootstrap as make_backend

    folder = stacks_folder(stacks_dir)
    spec = load_environment(env, folder)
    result = make_backend(
        env, spec.region, folder, bucket=bucket, adopt=adopt, aws=connect(spec.region)
    )
    choice = choose_backend(env, folder)
    if as_json:
        print_json({**result.to_json(), "in_use": {"source": choice.source, "url": choice.url}})
        return
    from rich.table import Table

    backend = result.backend
    steps = Table(show_header=False, box=None, padding=(0, 1))
    for step in result.steps:
        steps.add_row(_MARKS[step.action], escape(step.subject), f"[dim]{escape(step.detail)}[/]")
    out.print(steps)
    if result.changed:
        out.print(f"[bold green]✓[/] state backend of [bold]{env}[/] is ready")
    else:
        out.print(
            f"[bold green]✓[/] nothing to change: the state backend of [bold]{env}[/] is ready"
        )
    out.print(f"  [dim]backend[/]          {escape(backend.url)}")
    out.print(f"  [dim]secrets provider[/] {escape(backend.secrets_provider)}")
    out.print(f"  [dim]recorded in[/]      {escape(str(result.record))}")
    if choice.source in ("PULUMI_BACKEND_URL", "pulumi login"):
        out.print(
            f"[yellow]note:[/] {escape(choice.source)} chooses {escape(str(choice.url))}; "
            "fermion's stack commands use that until it is unset (`pulumi logout`)."
        )
