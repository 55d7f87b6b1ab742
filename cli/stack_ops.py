"""`fermion preview | up | destroy | refresh ENV`: the environment's stack, driven through Pulumi's
Automation API with a live display of the engine's events.

Exit codes: 0 done, 1 an error (the message says how to fix it), 2 bad usage (a question to ask
and no terminal to ask it on: pass --yes), 3 cancelled at the prompt.
"""

from __future__ import annotations

import functools
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.markup import escape

from fermion.cli.console import err, out, print_json
from fermion.cli.options import StackEnv, StacksDir

if TYPE_CHECKING:
    from pulumi.automation.events import EngineEvent

    from fermion.cli.stack_target import OpenedStack

OnEvent = Callable[["EngineEvent"], Any]

EXIT_USAGE = 2
EXIT_CANCELLED = 3

AsJson = Annotated[
    bool,
    typer.Option(
        "--json", help="No display: print the engine's summary (and outputs) as JSON, for scripts."
    ),
]
Yes = Annotated[
    bool,
    typer.Option(
        "--yes",
        "-y",
        help="Go ahead without asking. up asks only when a stateful resource (bucket, registry, "
        "cluster, KMS key) would be replaced or deleted; destroy always asks. Needed where stdin "
        "is not a terminal.",
    ),
]


PolicyPackDir = Annotated[
    Path | None,
    typer.Option(
        "--policy-pack",
        help="Run the CrossGuard policy pack in this folder (fermion's own: `policies` in its "
        "repository) in the preview and the update, with the environment's policy_waivers as "
        "its config. A mandatory violation stops the operation.",
        show_default=False,
    ),
]


def _open(env: str, stacks_dir: Path | None, policy_pack: Path | None) -> OpenedStack:
    """ENV's stack, once its file and the policy pack (when one is named) are checked: a bad
    pack folder is refused before the Pulumi CLI, backend and credential checks."""
    from fermion.cli.stack_target import check_environment, open_environment
    from fermion.stacks.operations import require_policy_pack

    checked = check_environment(env, stacks_dir)
    if policy_pack is not None:
        require_policy_pack(policy_pack)
    return open_environment(checked, create=True)


@contextmanager
def _policy_options(pack: Path | None, opened: OpenedStack) -> Iterator[dict[str, Any]]:
    from fermion.stacks.operations import policy_pack_options

    with tempfile.TemporaryDirectory(prefix="fermion-policy-") as folder:
        yield policy_pack_options(pack, opened.environment.spec.policy_waivers, Path(folder))


def preview(
    env: StackEnv,
    stacks_dir: StacksDir = None,
    as_json: AsJson = False,
    policy_pack: PolicyPackDir = None,
) -> None:
    """Show what `fermion up ENV` would change, from Pulumi's own preview against AWS."""
    from fermion.stacks.confirm import StepRecorder
    from fermion.stacks.operations import changes_json, run_operation

    opened = _open(env, stacks_dir, policy_pack)
    _header(opened, as_json)
    recorder = StepRecorder()
    with (
        _policy_options(policy_pack, opened) as policy,
        _watching("preview", env, as_json, recorder) as on_event,
    ):
        run = functools.partial(opened.stack.preview, **policy)
        result = run_operation("preview", env, run, on_event)
    risky = recorder.to_confirm()
    if as_json:
        print_json(
            {
                "environment": env,
                "operation": "preview",
                "resource_changes": changes_json(result.change_summary),
                "needs_confirmation": [asdict(step) for step in risky],
            }
        )
        return
    if risky:
        out.print(f"`fermion up {env}` will ask before it goes ahead, because it would:")
        for step in risky:
            out.print(f"  [bold red]{escape(step.describe())}[/]", soft_wrap=True)


def up(
    env: StackEnv,
    stacks_dir: StacksDir = None,
    yes: Yes = False,
    as_json: AsJson = False,
    policy_pack: PolicyPackDir = None,
) -> None:
    """Create or update ENV's resources in AWS. Asks first when a stateful resource would be
    replaced or deleted."""
    opened = _open(env, stacks_dir, policy_pack)
    _header(opened, as_json)
    with _policy_options(policy_pack, opened) as policy:
        _up(opened, env, yes, as_json, policy)


def _up(opened: OpenedStack, env: str, yes: bool, as_json: bool, policy: dict[str, Any]) -> None:
    from fermion.cli.console import print_outputs
    from fermion.stacks.confirm import StepRecorder
    from fermion.stacks.operations import outputs_json, run_operation, summary_json

    if not yes:
        recorder = StepRecorder()
        with _watching("preview", env, as_json, recorder) as on_event:
            preview_run = functools.partial(opened.stack.preview, **policy)
            run_operation("preview", env, preview_run, on_event)
        risky = recorder.to_confirm()
        if risky:
            count = len(risky)
            _confirm(
                "up",
                env,
                [
                    f"`fermion up {env}` would replace or delete {count} stateful "
                    f"resource{'s' if count > 1 else ''}, and lose what it holds:",
                    *(f"  {step.describe()}" for step in risky),
                ],
                f"Go ahead with up on {env}?",
            )
    with _watching("up", env, as_json) as on_event:
        result = run_operation("up", env, functools.partial(opened.stack.up, **policy), on_event)
    values = outputs_json(result.outputs, show_secrets=False)
    if as_json:
        print_json(
            {
                "environment": env,
                "operation": "up",
                "summary": summary_json(result.summary),
                "outputs": values,
            }
        )
        return
    print_outputs(values)


def destroy(
    env: StackEnv, stacks_dir: StacksDir = None, yes: Yes = False, as_json: AsJson = False
) -> None:
    """Delete every resource of ENV's stack, after a confirmation.

    The stack, its history and its config stay.
    """
    from fermion.cli.stack_target import check_environment, open_environment
    from fermion.stacks.confirm import StepRecorder
    from fermion.stacks.operations import run_operation, summary_json

    checked = check_environment(env, stacks_dir)
    if not yes and not _interactive():
        _refuse("destroy", env, f"`fermion destroy {env}` deletes every resource of the stack")
    opened = open_environment(checked, create=False)
    _header(opened, as_json)
    if not yes:
        recorder = StepRecorder()
        with _watching("destroy (preview)", env, as_json, recorder, planning=True) as on_event:
            run_operation("destroy", env, opened.stack.preview_destroy, on_event)
        count = recorder.count("delete")
        risky = recorder.to_confirm()
        lines = [f"`fermion destroy {env}` deletes all {count} resources of stack {env}"]
        if risky:
            lines[0] += ", with what these hold:"
            lines += [f"  {step.describe()}" for step in risky]
        _confirm("destroy", env, lines, f"Destroy every resource of {env}?")
    with _watching("destroy", env, as_json) as on_event:
        result = run_operation("destroy", env, opened.stack.destroy, on_event)
    if as_json:
        print_json(
            {"environment": env, "operation": "destroy", "summary": summary_json(result.summary)}
        )


def refresh(env: StackEnv, stacks_dir: StacksDir = None, as_json: AsJson = False) -> None:
    """Read ENV's resources back from AWS into the stack's state. Changes nothing in AWS."""
    from fermion.cli.console import print_outputs
    from fermion.cli.stack_target import check_environment, open_environment
    from fermion.stacks.operations import outputs_json, run_operation, summary_json

    opened = open_environment(check_environment(env, stacks_dir), create=False)
    _header(opened, as_json)
    with _watching("refresh", env, as_json) as on_event:
        result = run_operation("refresh", env, opened.stack.refresh, on_event)
    values = outputs_json(opened.stack.outputs(), show_secrets=False)
    if as_json:
        print_json(
            {
                "environment": env,
                "operation": "refresh",
                "summary": summary_json(result.summary),
                "outputs": values,
            }
        )
        return
    print_outputs(values)


def _header(opened: OpenedStack, as_json: bool) -> None:
    if not as_json:
        out.print(f"[dim]{escape(opened.describe())}[/]", soft_wrap=True)


@contextmanager
def _watching(
    operation: str, env: str, as_json: bool, *also: OnEvent, planning: bool | None = None
) -> Iterator[OnEvent | None]:
    """The `on_event` of one operation: `also`, plus the live display unless `as_json`."""
    handlers = list(also)
    if as_json:
        yield _chain(handlers)
        return
    from fermion.stacks.progress import StackProgress

    with StackProgress(operation, env, out, planning=planning) as progress:
        handlers.append(progress)
        yield _chain(handlers)


def _chain(handlers: Sequence[OnEvent]) -> OnEvent | None:
    if not handlers:
        return None

    def on_event(event: EngineEvent) -> None:
        for handler in handlers:
            handler(event)

    return on_event


def _interactive() -> bool:
    """Whether there is a person to ask: stdin is a terminal."""
    return sys.stdin.isatty()


def _confirm(command: str, env: str, lines: Sequence[str], question: str) -> None:
    """Show what is at stake on stderr, then ask; exit 3 on no, 2 with no terminal to ask on."""
    for line in lines:
        err.print(escape(line), soft_wrap=True)
    if not _interactive():
        _refuse(command, env, "it needs a yes")
    try:
        answer = typer.confirm(question, default=False, err=True)
    except typer.Abort:
        answer = False
    if not answer:
        err.print("cancelled: nothing was changed")
        raise typer.Exit(EXIT_CANCELLED)


def _refuse(command: str, env: str, why: str) -> NoReturn:
    err.print(
        f"[bold red]error:[/] {escape(why)}, and stdin is not a terminal to ask on. Run "
        f"`fermion {command} {env} --yes` to go ahead without asking.",
        soft_wrap=True,
    )
    raise typer.Exit(EXIT_USAGE)
