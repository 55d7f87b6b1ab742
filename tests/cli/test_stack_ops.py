"""`fermion preview | up | destroy | refresh | outputs ENV`.

Two kinds of test. A new user's run, in a fresh process with no Pulumi CLI on PATH and no AWS
credentials: each command says how to install the CLI and exits 1. And the commands' own logic
(checks in order, confirmation, exit codes, --json), in-process, with the checks that need the
Pulumi CLI and AWS replaced and the stack replaced by `StandIn`: an object that answers as the
Automation API's `Stack` does, with the SDK's own result and event types. No program here
pretends to be the Pulumi CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pulumi.automation import (
    CommandResult,
    DestroyResult,
    OutputValue,
    PreviewResult,
    RefreshResult,
    UpdateSummary,
    UpResult,
)
from pulumi.automation.errors import create_command_error
from pulumi.automation.events import EngineEvent, OpType
from typer.testing import CliRunner

from fermion.cli import app, stack_ops
from fermion.environments.sections import PolicyWaiverSpec
from fermion.stacks import credentials, pulumi_cli, workspace
from fermion.stacks.aws_lookups import Identity
from fermion.stacks.operations import policy_pack_options

from ..conftest import REPO, STACKS
from ..stacks.engine_events import BUCKET, DEPLOYMENT, SUBNET, diagnostic, done, summary

runner = CliRunner()

NEW_USER_COMMANDS = [
    ["preview", "dev"],
    ["up", "dev"],
    ["up", "dev", "--yes", "--json"],
    ["destroy", "dev", "--yes"],
    ["refresh", "dev"],
    ["outputs", "dev"],
    ["outputs", "dev", "--json", "--show-secrets"],
]
ALL_COMMANDS = [["preview"], ["up"], ["destroy", "--yes"], ["refresh"], ["outputs"]]


def without_pulumi(tmp_path: Path) -> dict[str, str]:
    """A new user's environment: no Pulumi CLI on PATH, no AWS credentials, an empty home."""
    folders = os.environ.get("PATH", "").split(os.pathsep)
    path = os.pathsep.join(f for f in folders if f and not (Path(f) / "pulumi").exists())
    return {
        "PATH": path,
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "LANG": "C.UTF-8",
    }


def fermion(
    args: Sequence[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("fermion")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "fermion.cli"]
    return subprocess.run(
        [*command, *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("args", NEW_USER_COMMANDS, ids=" ".join)
def test_without_the_pulumi_cli_each_command_says_how_to_install_it(
    args: list[str], tmp_path: Path
) -> None:
    done_ = fermion(args, without_pulumi(tmp_path), tmp_path)
    assert done_.returncode == 1, done_.stderr
    assert done_.stdout == ""
    message = " ".join(done_.stderr.split())
    assert message.startswith("error: the Pulumi CLI is not installed")
    assert "https://www.pulumi.com/docs/install/" in message
    assert "curl -fsSL https://get.pulumi.com | sh" in message
    assert "brew install pulumi/tap/pulumi" in message
    assert "3.1.0 or newer" in message
    assert "`fermion plan ENV` works without it" in message
    assert "Traceback" not in done_.stderr


def test_destroy_with_no_terminal_and_no_yes_is_bad_usage(tmp_path: Path) -> None:
    done_ = fermion(["destroy", "dev"], without_pulumi(tmp_path), tmp_path)
    assert done_.returncode == 2
    assert "`fermion destroy dev --yes`" in done_.stderr
    assert "Traceback" not in done_.stderr


# In-process: the seams the commands call, replaced.


def _summary(kind: str, changes: dict[str, int]) -> UpdateSummary:
    return UpdateSummary(
        kind=kind,
        start_time=datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
        message="",
        environment={},
        config={},
        result="succeeded",
        end_time=datetime(2026, 11, 30, 12, 9, tzinfo=UTC),
        version=4,
        resource_changes={OpType(op): n for op, n in changes.items()},
    )


OUTPUTS = {
    "environment": OutputValue("dev", secret=False),
    "models_bucket": OutputValue("dev-models-3f2a", secret=False),
    "kubeconfig": OutputValue("apiVersion: v1\nkind: Config\n", secret=True),
}


class StandIn:
    """Answers as `pulumi.automation.Stack` does, and records what was asked of it."""

    def __init__(
        self,
        plan: Sequence[EngineEvent] = (),
        events: Sequence[EngineEvent] = (),
        failure: CommandResult | None = None,
    ) -> None:
        self.plan = list(plan)
        self.events = list(events)
        self.failure = failure
        self.calls: list[str] = []
        self.policy_configs: dict[str, Any] = {}
        self.policy_packs: dict[str, list[str]] = {}

    def _run(self, name: str, events: Sequence[EngineEvent], kwargs: dict[str, Any]) -> None:
        self.calls.append(name)
        if "policy_packs" in kwargs:
            self.policy_packs[name] = kwargs["policy_packs"]
            (config,) = kwargs["policy_pack_configs"]
            self.policy_configs[name] = json.loads(Path(config).read_text())
        assert kwargs["color"] == "never"
        on_event = kwargs.get("on_event")
        for event in events:
            if on_event is not None:
                on_event(event)
        if self.failure is not None and name in ("up", "destroy", "refresh"):
            # As the SDK does: the CLI's output streams line by line, then the error.
            for line in self.failure.stdout.splitlines():
                kwargs["on_output"](line)
            for line in self.failure.stderr.splitlines():
                kwargs["on_error"](line)
            raise create_command_error(self.failure)

    def preview(self, **kwargs: Any) -> PreviewResult:
        self._run("preview", self.plan, kwargs)
        return PreviewResult("", "", {OpType.CREATE: 1, OpType.REPLACE: 1})

    def preview_destroy(self, **kwargs: Any) -> PreviewResult:
        self._run("preview_destroy", self.plan, kwargs)
        return PreviewResult("", "", {OpType.DELETE: 2})

    def up(self, **kwargs: Any) -> UpResult:
        self._run("up", self.events, kwargs)
        return UpResult("", "", _summary("update", {"create": 1, "same": 3}), dict(OUTPUTS))

    def destroy(self, **kwargs: Any) -> DestroyResult:
        self._run("destroy", self.events, kwargs)
        return DestroyResult("", "", _summary("destroy", {"delete": 2}))

    def refresh(self, **kwargs: Any) -> RefreshResult:
        self._run("refresh", self.events, kwargs)
        return RefreshResult("", "", _summary("refresh", {"same": 4}))

    def outputs(self) -> dict[str, OutputValue]:
        self.calls.append("outputs")
        return dict(OUTPUTS)


class Seams:
    """What the commands reached: the Pulumi CLI check, the credential check, the stack."""

    def __init__(self, stack: StandIn) -> None:
        self.stack = stack
        self.reached: list[str] = []
        self.created: list[bool] = []


@pytest.fixture
def seams(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Seams:
    found = Seams(StandIn())

    def require_pulumi_cli() -> object:
        found.reached.append("pulumi")
        return object()

    def require_aws_credentials(region: str, timeout_s: float | None = None) -> Identity:
        found.reached.append(f"aws {region}")
        return Identity("123456789012", "arn:aws:iam::123456789012:user/ci")

    def open_stack(env: str, project: Path, pulumi: object, backend: Any, create: bool) -> Any:
        found.reached.append(f"stack {env}")
        found.created.append(create)
        return found.stack

    monkeypatch.setattr(pulumi_cli, "require_pulumi_cli", require_pulumi_cli)
    monkeypatch.setattr(credentials, "require_aws_credentials", require_aws_credentials)
    monkeypatch.setattr(workspace, "open_stack", open_stack)
    monkeypatch.setattr(stack_ops, "_interactive", lambda: False)
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path}")
    return found


def invoke(*args: str, answer: str | None = None) -> Any:
    return runner.invoke(app, [*args, "--stacks-dir", str(STACKS)], input=answer)


def replacing_the_bucket() -> list[EngineEvent]:
    return [
        *done("replace", BUCKET, "dev-models", planning=True),
        *done("update", DEPLOYMENT, "embed", planning=True),
        summary({"replace": 1, "update": 1}),
    ]


def interactive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack_ops, "_interactive", lambda: True)


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=" ".join)
def test_a_bad_environment_file_is_refused_before_anything_else(
    command: list[str], seams: Seams, tmp_path: Path
) -> None:
    (tmp_path / "Pulumi.dev.yaml").write_text(
        "config:\n  fermion:environment:\n    network: {nat: one}\n"
    )
    result = runner.invoke(app, [command[0], "dev", *command[1:], "--stacks-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "network.nat (line 3): not an allowed value" in result.stderr
    assert seams.reached == []


def test_missing_credentials_stop_before_the_stack_is_touched(
    seams: Seams, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.undo()  # the real credential check, with nothing to find
    monkeypatch.setattr(pulumi_cli, "require_pulumi_cli", lambda: object())
    monkeypatch.setattr(workspace, "open_stack", lambda *a: pytest.fail("stack opened"))
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path}")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = invoke("preview", "dev")
    assert result.exit_code == 1
    assert "error: AWS credentials: none were found" in result.stderr
    assert "`aws configure`" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_that_would_replace_a_bucket_exits_3_when_the_answer_is_no(
    seams: Seams, monkeypatch: pytest.MonkeyPatch
) -> None:
    interactive(monkeypatch)
    seams.stack.plan = replacing_the_bucket()
    result = invoke("up", "dev", answer="n\n")
    assert result.exit_code == 3
    assert seams.stack.calls == ["preview"]
    assert "replace S3 bucket dev-models (aws:s3/bucket:Bucket)" in result.stderr
    assert "Go ahead with up on dev?" in result.stderr
    assert "cancelled: nothing was changed" in result.stderr


def test_up_goes_ahead_on_yes(seams: Seams, monkeypatch: pytest.MonkeyPatch) -> None:
    interactive(monkeypatch)
    seams.stack.plan = replacing_the_bucket()
    seams.stack.events = [*done("create", SUBNET, "dev-private-a"), summary({"create": 1}, 540)]
    result = invoke("up", "dev", answer="y\n")
    assert result.exit_code == 0, result.stderr
    assert seams.stack.calls == ["preview", "up"]
    assert seams.created == [True]
    assert "created aws:ec2/subnet:Subnet dev-private-a" in result.stdout
    assert "up dev: done in 9m 00s · 1 created" in result.stdout
    assert "models_bucket: dev-models-3f2a" in result.stdout
    assert "kubeconfig: [secret]" in result.stdout


def test_up_that_only_updates_a_deployment_asks_nothing(seams: Seams) -> None:
    seams.stack.plan = [*done("update", DEPLOYMENT, "embed", planning=True)]
    result = invoke("up", "dev")
    assert result.exit_code == 0, result.stderr
    assert seams.stack.calls == ["preview", "up"]
    assert "Go ahead" not in result.stderr


def test_up_with_no_terminal_to_ask_on_is_bad_usage_naming_yes(seams: Seams) -> None:
    seams.stack.plan = replacing_the_bucket()
    result = invoke("up", "dev")
    assert result.exit_code == 2
    assert seams.stack.calls == ["preview"]
    assert "replace S3 bucket dev-models" in result.stderr
    assert "`fermion up dev --yes`" in result.stderr


def test_up_yes_skips_the_preview(seams: Seams) -> None:
    result = invoke("up", "dev", "--yes")
    assert result.exit_code == 0, result.stderr
    assert seams.stack.calls == ["up"]
    assert seams.reached == ["pulumi", "aws us-west-2", "stack dev"]


def test_up_json_is_the_engines_summary_and_the_outputs_only(seams: Seams) -> None:
    seams.stack.events = [*done("create", SUBNET, "dev-private-a")]
    result = invoke("up", "dev", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["operation"] == "up"
    assert document["summary"]["result"] == "succeeded"
    assert document["summary"]["resource_changes"] == {"create": 1, "same": 3}
    assert document["outputs"]["kubeconfig"] == "[secret]"
    assert document["outputs"]["models_bucket"] == "dev-models-3f2a"


def test_a_failed_up_shows_the_engines_error_without_a_traceback(seams: Seams) -> None:
    seams.stack.events = [
        diagnostic(
            "error",
            "creating EKS Cluster (dev-cluster): AccessDeniedException: not authorized",
            "urn:pulumi:dev::fermion::aws:eks/cluster:Cluster::dev-cluster",
        )
    ]
    seams.stack.failure = CommandResult(
        stdout="(the CLI's own display)", stderr="error: update failed", code=255
    )
    result = invoke("up", "dev", "--yes")
    assert result.exit_code == 1
    assert "error: `pulumi up` on stack 'dev' failed" in result.stderr
    assert "  - dev-cluster: creating EKS Cluster (dev-cluster): AccessDeniedException" in (
        result.stderr
    )
    assert "error: update failed" in result.stderr
    assert "the CLI's own display" not in result.stderr
    assert "Traceback" not in result.stderr
    assert "up dev: failed" in result.stdout


def test_destroy_exits_3_when_the_answer_is_no(
    seams: Seams, monkeypatch: pytest.MonkeyPatch
) -> None:
    interactive(monkeypatch)
    seams.stack.plan = [
        *done("delete", BUCKET, "dev-models", planning=True),
        *done("delete", SUBNET, "dev-private-a", planning=True),
    ]
    result = invoke("destroy", "dev", answer="n\n")
    assert result.exit_code == 3
    assert seams.stack.calls == ["preview_destroy"]
    assert seams.created == [False]
    assert "deletes all 2 resources of stack dev" in result.stderr
    assert "delete S3 bucket dev-models" in result.stderr


def test_destroy_at_end_of_input_is_cancelled_too(
    seams: Seams, monkeypatch: pytest.MonkeyPatch
) -> None:
    interactive(monkeypatch)
    result = invoke("destroy", "dev", answer="")
    assert result.exit_code == 3
    assert seams.stack.calls == ["preview_destroy"]


def test_destroy_with_no_terminal_refuses_before_opening_the_stack(seams: Seams) -> None:
    result = invoke("destroy", "dev")
    assert result.exit_code == 2
    assert seams.reached == []
    assert "`fermion destroy dev --yes`" in result.stderr


def test_destroy_yes_json(seams: Seams) -> None:
    result = invoke("destroy", "dev", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    assert seams.stack.calls == ["destroy"]
    assert json.loads(result.stdout)["summary"]["resource_changes"] == {"delete": 2}


def test_preview_json_lists_what_up_would_ask_about(seams: Seams) -> None:
    seams.stack.plan = replacing_the_bucket()
    result = invoke("preview", "dev", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["resource_changes"] == {"create": 1, "replace": 1}
    (step,) = document["needs_confirmation"]
    assert (step["action"], step["type"], step["name"]) == ("replace", BUCKET, "dev-models")


def test_preview_shows_the_plan_and_what_up_would_ask_about(seams: Seams) -> None:
    seams.stack.plan = replacing_the_bucket()
    result = invoke("preview", "dev")
    assert result.exit_code == 0, result.stderr
    assert "to replace aws:s3/bucket:Bucket dev-models" in result.stdout
    assert "preview dev: done in 0s · 1 to update · 1 to replace" in result.stdout
    assert "`fermion up dev` will ask before it goes ahead" in result.stdout


def test_refresh_uses_the_existing_stack(seams: Seams) -> None:
    result = invoke("refresh", "dev", "--json")
    assert result.exit_code == 0, result.stderr
    assert seams.created == [False]
    assert seams.stack.calls == ["refresh", "outputs"]
    assert json.loads(result.stdout)["summary"]["kind"] == "refresh"


def test_outputs_mask_secrets_unless_asked(seams: Seams) -> None:
    masked = invoke("outputs", "dev", "--json")
    assert masked.exit_code == 0, masked.stderr
    assert json.loads(masked.stdout)["kubeconfig"] == "[secret]"
    shown = invoke("outputs", "dev", "--json", "--show-secrets")
    assert json.loads(shown.stdout)["kubeconfig"].startswith("apiVersion: v1")
    # A file backend is not in AWS: outputs need no AWS credentials.
    assert "aws us-west-2" not in seams.reached


def test_outputs_for_people(seams: Seams) -> None:
    result = invoke("outputs", "dev")
    assert result.exit_code == 0, result.stderr
    assert "stack dev · region us-west-2" in result.stdout
    assert "environment: dev" in result.stdout
    assert "kubeconfig: [secret]" in result.stdout


def test_a_locked_stack_says_how_to_free_it(seams: Seams) -> None:
    seams.stack.failure = CommandResult(
        stdout="", stderr="error: the stack is currently locked by 1 lock(s)", code=255
    )
    result = invoke("refresh", "dev")
    assert result.exit_code == 1
    assert "the stack is currently locked" in result.stderr
    assert "Another operation holds the stack's lock" in result.stderr


def test_the_stack_commands_have_a_panel_of_their_own() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "120"})
    panel = result.stdout[result.stdout.index("Stacks") :]
    for command in ("preview", "up", "destroy", "refresh", "outputs"):
        assert f" {command} " in panel
    shown = runner.invoke(app, ["outputs", "--help"], env={"COLUMNS": "200"})
    assert "instead of [secret]." in shown.stdout


def test_the_policy_pack_runs_with_the_environments_waivers_as_config(
    seams: Seams, tmp_path: Path
) -> None:
    pack = REPO / "policies"
    result = invoke("up", "dev", "--yes", "--policy-pack", str(pack))
    assert result.exit_code == 0, result.stderr
    assert seams.stack.policy_packs == {"up": [str(pack.resolve())]}
    assert seams.stack.policy_configs == {"up": {}}  # dev waives nothing
    reason = "CI runners have no fixed addresses"
    waiver = PolicyWaiverSpec(
        policy="eks-public-endpoint-cidrs", resource="dev-cluster", reason=reason
    )
    options = policy_pack_options(pack, [waiver], tmp_path)
    (config,) = options["policy_pack_configs"]
    assert json.loads(Path(config).read_text()) == {
        "eks-public-endpoint-cidrs": {"waivers": [{"resource": "dev-cluster", "reason": reason}]}
    }


def test_preview_passes_the_pack_too(seams: Seams) -> None:
    result = invoke("preview", "dev", "--policy-pack", str(REPO / "policies"))
    assert result.exit_code == 0, result.stderr
    assert seams.stack.policy_configs == {"preview": {}}


def test_a_folder_that_is_no_policy_pack_is_refused_first(seams: Seams, tmp_path: Path) -> None:
    result = invoke("preview", "dev", "--policy-pack", str(tmp_path))
    assert result.exit_code == 1
    assert f"--policy-pack {tmp_path}: no PulumiPolicy.yaml there" in result.stderr
    assert seams.reached == []
