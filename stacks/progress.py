"""The progress of a stack operation, built from the engine's events and shown with rich.

`StackProgress` is the `on_event` of a preview, up, refresh or destroy. Each finished step is
printed as a line (`created aws:s3/bucket:Bucket dev-models (14s)`); on a terminal a live footer
under those lines shows the counts so far, the steps in flight with their own elapsed time, and
the operation's elapsed time. At the end comes a summary: the engine's counts and duration, the
steps that failed, and the engine's errors and warnings.

The engine calls `on_event` from its own threads while rich redraws from another, so the state
sits behind a lock and nothing is printed while the lock is held.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fermion.stacks.steps import Step, op_name, urn_name

if TYPE_CHECKING:
    from pulumi.automation.events import EngineEvent, SummaryEvent

__all__ = ["Diagnostic", "StackProgress", "format_elapsed"]

# Each operation the engine counts: done (up, refresh, destroy), planned (preview), in flight.
_WORDS: Mapping[str, tuple[str, str, str]] = {
    "create": ("created", "to create", "creating"),
    "update": ("updated", "to update", "updating"),
    "replace": ("replaced", "to replace", "replacing"),
    "delete": ("deleted", "to delete", "deleting"),
    "import": ("imported", "to import", "importing"),
    "read": ("read", "to read", "reading"),
    "refresh": ("refreshed", "to refresh", "refreshing"),
    "same": ("unchanged", "unchanged", "checking"),
}
_STEP_WORDS: Mapping[str, tuple[str, str, str]] = {
    "create-replacement": ("created replacement", "to create replacement", "creating replacement"),
    "delete-replaced": ("deleted original", "to delete original", "deleting original"),
    "discard": ("discarded", "to discard", "discarding"),
    "discard-replaced": ("discarded original", "to discard original", "discarding original"),
    "read-replacement": ("read replacement", "to read replacement", "reading replacement"),
    "import-replacement": ("imported replacement", "to import replacement", "importing"),
    "remove-pending-replace": ("settled replacement", "to settle replacement", "settling"),
}
_COLOURS = {"create": "green", "update": "yellow", "replace": "magenta", "delete": "red"}
# Only the logical step of a replacement counts, as in the engine's own summary.
_UNCOUNTED = frozenset({"create-replacement", "delete-replaced", "discard-replaced"})
_SEVERITIES = ("error", "warning")


def format_elapsed(seconds: float) -> str:
    """A duration for people: `14s`, `2m 05s`, `1h 02m`."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def _word(op: str, form: int) -> str:
    words = _WORDS.get(op) or _STEP_WORDS.get(op)
    return op if words is None else words[form]


@dataclass(frozen=True)
class Diagnostic:
    """An error or warning the engine reported, with the resource it is about."""

    severity: str
    message: str
    resource: str | None = None

    def __str__(self) -> str:
        """`error: dev-cluster: the message` for people."""
        where = f"{self.resource}: " if self.resource else ""
        return f"{self.severity}: {where}{self.message}"


class StackProgress:
    """The live display of one operation (`preview`, `up`, `refresh`, `destroy`) on a stack.

    Use it as a context manager around the operation and pass it as `on_event`. `planning` says
    the operation only plans (a preview), which words the counts as `to create`.
    """

    def __init__(
        self,
        operation: str,
        stack: str,
        console: Console,
        planning: bool | None = None,
        clock: Callable[[], float] | None = None,
        max_running: int | None = None,
    ) -> None:
        self.operation = operation
        self.stack = stack
        self.console = console
        self.planning = operation == "preview" if planning is None else planning
        self._clock = time.monotonic if clock is None else clock
        self._max_running = 8 if max_running is None else max_running
        self._lock = threading.Lock()
        self._started = self._clock()
        self._finished: float | None = None
        self._running: dict[str, tuple[Step, float]] = {}
        self._counts: Counter[str] = Counter()
        self._failed: list[Step] = []
        self._diagnostics: list[Diagnostic] = []
        self._summary: SummaryEvent | None = None
        self._cancelled = False
        self._live: Live | None = None

    # The engine's side.

    def __call__(self, event: EngineEvent) -> None:
        """Take one engine event: `on_event`."""
        line: Text | None = None
        with self._lock:
            if event.resource_pre_event is not None:
                self._pre(Step.from_metadata(event.resource_pre_event.metadata))
            elif event.res_outputs_event is not None:
                line = self._post(Step.from_metadata(event.res_outputs_event.metadata))
            elif event.res_op_failed_event is not None:
                line = self._fail(Step.from_metadata(event.res_op_failed_event.metadata))
            elif event.diagnostic_event is not None:
                self._diagnose(event)
            elif event.summary_event is not None:
                self._summary = event.summary_event
            elif event.cancel_event is not None:
                self._cancelled = True
        if line is not None:
            self.console.print(line, soft_wrap=True)

    def _pre(self, step: Step) -> None:
        if not step.custom:
            # Components get no step of their own: count them as the engine does, at once.
            if step.op not in _UNCOUNTED:
                self._counts[step.op] += 1
            return
        self._running[step.urn] = (step, self._clock())

    def _post(self, step: Step) -> Text | None:
        started = self._running.pop(step.urn, None)
        if started is None:
            # A component's outputs, or a step reported twice: counted already.
            return None
        if step.op not in _UNCOUNTED:
            self._counts[step.op] += 1
        if step.op == "same":
            return None
        line = Text.assemble(
            (_word(step.op, 1 if self.planning else 0), _COLOURS.get(step.op, "")),
            f" {step.type} ",
            (step.name, "bold"),
        )
        if not self.planning:
            line.append(f" ({format_elapsed(self._clock() - started[1])})", "dim")
        return line

    def _fail(self, step: Step) -> Text:
        self._running.pop(step.urn, None)
        self._failed.append(step)
        return Text.assemble(
            ("failed", "bold red"), f" {step.op} {step.type} ", (step.name, "bold")
        )

    def _diagnose(self, event: EngineEvent) -> None:
        diagnostic = event.diagnostic_event
        if diagnostic is None or diagnostic.ephemeral or diagnostic.severity not in _SEVERITIES:
            return
        message = diagnostic.message.strip()
        if not message:
            return
        resource = urn_name(diagnostic.urn) if diagnostic.urn else None
        self._diagnostics.append(Diagnostic(diagnostic.severity, message, resource))

    # What people see.

    @property
    def errors(self) -> list[str]:
        """The engine's error messages so far, each with its resource."""
        with self._lock:
            return [str(d) for d in self._diagnostics if d.severity == "error"]

    def footer(self) -> RenderableType:
        """The live footer: elapsed time, counts so far and the steps in flight."""
        with self._lock:
            now = self._clock()
            header = Text.assemble(
                (self.operation, "bold"),
                f" {self.stack} · {format_elapsed(now - self._started)}",
                " · ",
                self._counts_text(self._counts) or Text("starting", "dim"),
            )
            parts: list[RenderableType] = [header]
            running = [(s, t) for s, t in self._running.values() if s.op != "same"]
            running.sort(key=lambda item: item[1])
            if running:
                table = Table.grid(padding=(0, 1))
                for step, started in running[: self._max_running]:
                    table.add_row(
                        Text(f"  {_word(step.op, 2)}", _COLOURS.get(step.op, "")),
                        step.type,
                        Text(step.name, "bold"),
                        Text(format_elapsed(now - started), "dim"),
                    )
                parts.append(table)
                if len(running) > self._max_running:
                    parts.append(Text(f"  … and {len(running) - self._max_running} more", "dim"))
            problems = Counter(d.severity for d in self._diagnostics)
            if problems or self._failed:
                noted = [f"{n} {s}{'s' if n > 1 else ''}" for s, n in sorted(problems.items())]
                if self._failed:
                    noted.append(f"{len(self._failed)} failed")
                parts.append(Text(f"  {', '.join(noted)} (shown at the end)", "yellow"))
            return Group(*parts)

    def _counts_text(self, counts: Mapping[str, int]) -> Text | None:
        shown = [(op, n) for op, n in counts.items() if n and op not in _UNCOUNTED]
        if not shown:
            return None
        order = list(_WORDS)
        shown.sort(key=lambda item: order.index(item[0]) if item[0] in order else len(order))
        text = Text()
        for i, (op, count) in enumerate(shown):
            if i:
                text.append(" · ")
            text.append(f"{count} {_word(op, 1 if self.planning else 0)}", _COLOURS.get(op, ""))
        return text

    def summary(self) -> RenderableType:
        """The end: the engine's counts and duration, failures, errors and warnings."""
        with self._lock:
            summary = self._summary
            counts: Mapping[str, int] = self._counts
            elapsed = (self._clock() if self._finished is None else self._finished) - self._started
            if summary is not None:
                counts = {op_name(op): n for op, n in summary.resource_changes.items()}
                elapsed = float(summary.duration_seconds)
            failed = bool(self._failed) or any(d.severity == "error" for d in self._diagnostics)
            state = "cancelled" if self._cancelled else "failed" if failed else "done"
            colour = "green" if state == "done" else "red"
            head = Text.assemble(
                (f"{self.operation} {self.stack}: {state}", f"bold {colour}"),
                f" in {format_elapsed(elapsed)}",
            )
            counted = self._counts_text(counts)
            if counted is not None:
                head.append(" · ")
                head.append_text(counted)
            elif state == "done":
                head.append(" · no changes" if self.planning else " · nothing to do")
            parts: list[RenderableType] = [head]
            for step in self._failed:
                parts.append(
                    Text.from_markup(
                        f"  [red]failed[/] {escape(step.op)} {escape(step.type)} "
                        f"[bold]{escape(step.name)}[/]"
                    )
                )
            for diagnostic in self._diagnostics:
                style = "red" if diagnostic.severity == "error" else "yellow"
                parts.append(Text(f"  {diagnostic}", style))
            if summary is not None and summary.maybe_corrupt:
                parts.append(
                    Text(
                        f"  the engine says the stack's state may be corrupt: run "
                        f"`fermion refresh {self.stack}` before anything else",
                        "bold red",
                    )
                )
            return Group(*parts)

    # Running.

    def __enter__(self) -> StackProgress:
        with self._lock:
            self._started = self._clock()
        if self.console.is_terminal:
            self._live = Live(
                get_renderable=self.footer,
                console=self.console,
                refresh_per_second=4,
                transient=True,
            )
            self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        with self._lock:
            self._finished = self._clock()
        self.console.print(self.summary(), soft_wrap=True)
