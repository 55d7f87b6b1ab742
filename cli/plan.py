"""`fermion plan ENV`: the environment's resource graph, cost per hour and findings, offline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from fermion.cli.console import out, print_json, print_outputs, usd
from fermion.cli.options import StacksDir, stacks_folder

if TYPE_CHECKING:
    from rich.tree import Tree

    from fermion.stacks.plan import Plan, PlannedResource

BANNER = (
    "offline plan, not `pulumi preview`: the stack program ran under Pulumi's mocks and "
    "nothing was sent to AWS. Values AWS computes show as (known after up); its ids and ARNs "
    "as marked placeholders, (known after up: NAME)."
)


def plan(
    env: Annotated[
        str, typer.Argument(help="Environment name: reads Pulumi.<ENV>.yaml.", show_default=False)
    ],
    stacks_dir: StacksDir = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the graph, outputs, cost and findings as JSON."),
    ] = False,
    manifests: Annotated[
        Path | None,
        typer.Option(
            "--manifests",
            help="Write each Kubernetes object (and each Helm release's chart and values) as "
            "YAML into this folder.",
            show_default=False,
        ),
    ] = None,
    ask_aws: Annotated[
        bool,
        typer.Option(
            "--aws",
            help="Ask AWS, with your credentials, for the zones, instance-type offerings and "
            "add-on versions the plan otherwise assumes. Nothing is created.",
        ),
    ] = False,
    no_policy: Annotated[
        bool,
        typer.Option(
            "--no-policy",
            help="Skip the policy pack's rules. Without it, a mandatory finding exits 4.",
        ),
    ] = False,
) -> None:
    """Show what `pulumi up` would create for ENV, its cost and its policy findings, offline.

    No credentials and no Pulumi CLI are needed. Exits 4 when a mandatory policy finds a
    violation.
    """
    from fermion.environments.stack_files import read_stack_config, stack_file
    from fermion.stacks.plan import plan_environment

    config = read_stack_config(stack_file(env, stacks_folder(stacks_dir)))
    spec = config.spec(env)
    asked = None
    if ask_aws:
        from fermion.stacks.aws_answers import aws_answers
        from fermion.stacks.aws_lookups import connect

        answers = aws_answers(spec, connect(spec.region))
        asked = answers.asked
        result = plan_environment(spec, answers=answers, policy=not no_policy)
    else:
        result = plan_environment(spec, policy=not no_policy)
    written = None
    if manifests is not None:
        from fermion.stacks.manifests import write_manifests

        written = write_manifests(result.resources, manifests)
    if as_json:
        print_json(result.to_json() if asked is None else {**result.to_json(), "asked_aws": asked})
        _exit_on_mandatory(result)
        return
    out.print(f"[bold yellow]{escape(BANNER if asked is None else _asked_banner(asked))}[/]")
    out.print()
    out.print(_tree(result))
    print_outputs(result.outputs)
    _print_cost(result)
    _print_findings(result, checked=not no_policy)
    if result.assumptions:
        out.print("[bold]assumed offline[/] (pulumi preview asks AWS instead):")
        for text in result.assumptions:
            out.print(f"  - {escape(text)}")
    if written is not None:
        out.print(
            f"wrote {len(written.objects)} Kubernetes objects and {len(written.releases)} Helm "
            f"releases to {escape(str(written.folder))}"
        )
    _exit_on_mandatory(result)


def _exit_on_mandatory(result: Plan) -> None:
    # 4, not 1: the plan itself worked, and CI can tell a policy failure from a broken plan.
    if any(f.level == "mandatory" and f.waived is None for f in result.findings):
        raise typer.Exit(4)


def _asked_banner(asked: dict[str, str]) -> str:
    lookups = ", ".join(key for key in asked if key != "account")
    return (
        "plan, not `pulumi preview`: the stack program ran under Pulumi's mocks; AWS (account "
        f"{asked['account']}) answered its lookups ({lookups}) and nothing was created. Values "
        "AWS computes show as (known after up)."
    )


def _tree(result: Plan) -> Tree:
    from rich.tree import Tree

    children = result.children()
    root = Tree(
        f"[bold]{result.environment}[/]: {len(result.resources)} resources "
        f"({sum(1 for r in result.resources if not r.custom)} components)"
    )

    def add(node: Tree, parent: str | None) -> None:
        for resource in children.get(parent, []):
            branch = node.add(_label(resource, children))
            add(branch, resource.urn)

    add(root, None)
    return root


def _label(resource: PlannedResource, children: dict[str | None, list[PlannedResource]]) -> str:
    if not resource.custom:
        count = len(children.get(resource.urn, []))
        return f"[bold cyan]{escape(resource.type)}[/] {escape(resource.name)} [dim]({count})[/]"
    return f"[dim]{escape(resource.type)}[/] {escape(resource.name)}"


def _print_cost(result: Plan) -> None:
    from rich.table import Table

    from fermion.stacks.cost import LEFT_OUT

    cost = result.cost
    title = f"cost per hour (on-demand, {cost.price_region} prices read {cost.read_on}"
    region = result.outputs.get("region")
    if isinstance(region, str) and region != cost.price_region:
        title += f"; {region} differs by a few percent"
    # The title stands on its own line: a table's title folds to the table's width.
    out.print(f"{title})")
    table = Table()
    for column in ("item", "detail", "count", "each", "at min", "at max"):
        table.add_column(
            column, justify="right" if column in ("each", "at min", "at max") else "left"
        )
    for line in cost.lines:
        count = (
            str(line.count_min)
            if line.count_min == line.count_max
            else f"{line.count_min}-{line.count_max}"
        )
        detail = line.detail if line.note is None else f"{line.detail}\n[dim]{line.note}[/]"
        table.add_row(
            line.item,
            detail,
            count,
            usd(line.usd_per_hour_each),
            usd(line.min_usd),
            usd(line.max_usd),
        )
    table.add_section()
    table.add_row(
        "[bold]total[/]",
        "",
        "",
        "",
        f"[bold]{usd(cost.per_hour_min_usd)}[/]",
        f"[bold]{usd(cost.per_hour_max_usd)}[/]",
    )
    out.print(table)
    out.print(f"  [dim]not counted: {LEFT_OUT}[/]")


def _print_findings(result: Plan, checked: bool = True) -> None:
    if not checked:
        out.print("[bold]findings[/]: [dim]not checked (--no-policy)[/]")
        return
    if not result.findings:
        out.print("[bold]findings[/]: none [dim](every policy passed)[/]")
        return
    out.print(f"[bold]findings[/]: {len(result.findings)}")
    for finding in result.findings:
        colour = "red" if finding.level == "mandatory" else "yellow"
        level = finding.level if finding.waived is None else f"waived {finding.level}"
        out.print(
            f"  [{colour}]{level}[/] {escape(finding.policy)}: {escape(finding.message)}"
            f"\n    [dim]{escape(finding.urn)}[/]"
        )
        if finding.waived is not None:
            out.print(f"    [dim]waived: {escape(finding.waived)}[/]")
