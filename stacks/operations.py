"""Running one Automation API operation, and what comes out of it in plain data.

`run_operation` calls a stack's preview, up, refresh or destroy with fermion's event handler,
keeps the engine's error messages and the CLI's last lines, and turns a failure into a
`StackOperationError` that says what went wrong without Pulumi's whole log. The JSON helpers turn
the SDK's results (summaries, outputs) into data for `--json`.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fermion.environments.errors import FermionError
from fermion.environments.sections import PolicyWaiverSpec
from fermion.policies.waivers import pack_config
from fermion.stacks.steps import op_name, urn_name

if TYPE_CHECKING:
    from pulumi.automation import OutputValue, UpdateSummary
    from pulumi.automation.events import EngineEvent

__all__ = [
    "SECRET",
    "PolicyPackError",
    "StackOperationError",
    "changes_json",
    "outputs_json",
    "policy_pack_options",
    "require_policy_pack",
    "run_operation",
    "summary_json",
]

R = TypeVar("R")
SECRET = "[secret]"
"""What a secret output shows without --show-secrets (the Pulumi CLI's own mask)."""
_TAIL = 20
_LOCKED = (
    "Another operation holds the stack's lock: wait for it to finish. If none is running, "
    "`pulumi cancel` (Pulumi Cloud) or removing the lock under .pulumi/locks/ in the state bucket "
    "(an S3 or file backend) frees it."
)


class StackOperationError(FermionError):
    """A Pulumi operation that failed: the engine's errors, else the CLI's last lines."""

    def __init__(
        self,
        operation: str,
        env: str,
        errors: Sequence[str],
        last_lines: Sequence[str],
        hint: str | None = None,
    ) -> None:
        self.operation = operation
        self.env = env
        self.errors = tuple(errors)
        lines = [f"`pulumi {operation}` on stack {env!r} failed"]
        if self.errors:
            lines += [f"  - {e}" for e in self.errors]
        shown = [line for line in last_lines if line.strip()][-_TAIL:]
        if shown:
            lines.append("the Pulumi CLI's last lines:")
            lines += [f"  {line.rstrip()}" for line in shown]
        lines.append(
            hint
            if hint is not None
            else f"Fix what it names, then run `fermion {operation} {env}` again."
        )
        super().__init__("\n".join(lines))


class _Watcher:
    """Passes events on to `on_event`, and keeps the engine's error messages."""

    def __init__(self, on_event: Callable[[EngineEvent], Any] | None) -> None:
        self._on_event = on_event
        self._lock = threading.Lock()
        self.errors: list[str] = []

    def __call__(self, event: EngineEvent) -> None:
        diagnostic = event.diagnostic_event
        if diagnostic is not None and diagnostic.severity == "error" and not diagnostic.ephemeral:
            where = f"{urn_name(diagnostic.urn)}: " if diagnostic.urn else ""
            with self._lock:
                self.errors.append(f"{where}{diagnostic.message.strip()}")
        if self._on_event is not None:
            self._on_event(event)


def run_operation(
    operation: str,
    env: str,
    run: Callable[..., R],
    on_event: Callable[[EngineEvent], Any] | None = None,
) -> R:
    """`run(on_event=..., on_output=..., on_error=..., color="never")`, e.g. `stack.up`, with
    failures turned into a StackOperationError."""
    from pulumi.automation.errors import CommandError, ConcurrentUpdateError

    watcher = _Watcher(on_event)
    stdout: deque[str] = deque(maxlen=_TAIL)
    stderr: deque[str] = deque(maxlen=_TAIL)
    try:
        return run(on_event=watcher, on_output=stdout.append, on_error=stderr.append, color="never")
    except ConcurrentUpdateError:
        raise StackOperationError(operation, env, [], stderr, _LOCKED) from None
    except CommandError:
        # Without the engine's errors, stderr says why (a plugin, the backend, the program's
        # virtualenv); stdout is the CLI's own display, the last resort.
        last = stderr if stderr or watcher.errors else stdout
        raise StackOperationError(operation, env, watcher.errors, last) from None


def changes_json(changes: Mapping[Any, int] | None) -> dict[str, int]:
    """The engine's resource changes by operation, e.g. {"create": 3, "same": 40}."""
    return {op_name(op): int(n) for op, n in (changes or {}).items()}


def summary_json(summary: UpdateSummary) -> dict[str, Any]:
    """The engine's summary of an update, refresh or destroy."""
    return {
        "kind": summary.kind,
        "result": summary.result,
        "version": summary.version,
        "started": summary.start_time.isoformat() if summary.start_time else None,
        "ended": summary.end_time.isoformat() if summary.end_time else None,
        "resource_changes": changes_json(summary.resource_changes),
    }


def outputs_json(outputs: Mapping[str, OutputValue], show_secrets: bool) -> dict[str, Any]:
    """The stack's outputs by name, secrets masked unless `show_secrets`."""
    return {
        name: output.value if show_secrets or not output.secret else SECRET
        for name, output in sorted(outputs.items())
    }


class PolicyPackError(FermionError):
    """`--policy-pack` names a folder that holds no CrossGuard policy pack."""

    def __init__(self, folder: Path) -> None:
        super().__init__(
            f"--policy-pack {folder}: no PulumiPolicy.yaml there, so it is not a policy pack. "
            "Pass the folder of a CrossGuard pack, e.g. `--policy-pack policies` in fermion's "
            "repository (pip install -e '.[policy]' first)"
        )


def require_policy_pack(pack: Path) -> Path:
    """`pack`, once it is known to hold a CrossGuard policy pack."""
    if not (pack / "PulumiPolicy.yaml").is_file():
        raise PolicyPackError(pack)
    return pack


def policy_pack_options(
    pack: Path | None, waivers: Sequence[PolicyWaiverSpec], folder: Path
) -> dict[str, Any]:
    """The Automation API's arguments that run the policy pack in `pack` with the environment's
    waivers as its config (a file written in `folder`); none without a pack."""
    if pack is None:
        return {}
    require_policy_pack(pack)
    config = folder / "policy-pack-config.json"
    config.write_text(json.dumps(pack_config(waivers), indent=2) + "\n", encoding="utf-8")
    return {"policy_packs": [str(pack.resolve())], "policy_pack_configs": [str(config)]}
