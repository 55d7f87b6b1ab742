"""`fermion doctor ENV`: preflight checks of an environment against your AWS account."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from fermion.cli.console import out, print_json
from fermion.cli.options import StacksDir, stacks_folder

if TYPE_CHECKING:
    from fermion.stacks.doctor import DoctorReport

_STATUS = {"pass": "[green]pass[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]fail[/]"}


def doctor(
    env: Annotated[
        str,
        typer.Argument(
            help="Environment name: reads Pulumi.<ENV>.yaml and checks its region.",
            show_default=False,
        ),
    ],
    stacks_dir: StacksDir = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print every check as JSON, for scripts.")
    ] = False,
) -> None:
    """Check ENV against your AWS account before a deploy.

    Credentials, region, zones, GPU quotas, EKS version, NVIDIA AMI, bucket names, public
    services' certificates and the state backend. Exits 1 when any check fails; warnings alone
    exit 0.
    """
    from fermion.environments.stack_files import load_environment
    from fermion.stacks.aws_lookups import connect
    from fermion.stacks.doctor import run_doctor

    folder = stacks_folder(stacks_dir)
    spec = load_environment(env, folder)
    report = run_doctor(spec, folder, connect(spec.region))
    if as_json:
        print_json(report.to_json())
    else:
        _print(report)
    if report.failed:
        raise typer.Exit(1)


def _print(report: DoctorReport) -> None:
    from rich.table import Table

    account = report.account if report.account is not None else "unknown account"
    table = Table(title=f"{report.environment}: {account}, {report.region}", title_justify="left")
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column, no_wrap=column in ("check", "status"))
    for check in report.checks:
        table.add_row(
            escape(check.name),
            _STATUS[check.status],
            escape(check.detail),
            escape(check.fix) if check.fix is not None else "",
        )
    out.print(table)
    counts = {s: sum(1 for c in report.checks if c.status == s) for s in _STATUS}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    mark = "[bold red]✗[/]" if report.failed else "[bold green]✓[/]"
    out.print(f"{mark} {summary}")
