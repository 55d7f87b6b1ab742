"""The Pulumi program (stacks/__main__.py), run under Pulumi's mocks."""

from __future__ import annotations

import asyncio
import json
import runpy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime.stack import wait_for_rpcs

from fermion.stacks.plan import OfflineAnswers

from ..conftest import STACKS, environment_data


class _Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        return {}, []


@pytest.fixture(autouse=True)
def event_loop_for_pulumi() -> Iterator[None]:
    # Pulumi's runtime looks up the current event loop; a test that ran asyncio.run() before
    # leaves none behind.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()


def run_program(
    monkeypatch: pytest.MonkeyPatch,
    stack: str,
    environment: Any,
    region: str | None = None,
    mocks: pulumi.runtime.Mocks | None = None,
) -> dict[str, Any]:
    pulumi.runtime.set_mocks(
        _Mocks() if mocks is None else mocks, project="fermion", stack=stack, preview=True
    )
    config = {} if environment is None else {"fermion:environment": json.dumps(environment)}
    if region is not None:
        config["aws:region"] = region
    pulumi.runtime.set_all_config(config)
    exports: dict[str, Any] = {}
    monkeypatch.setattr(pulumi, "export", exports.__setitem__)
    runpy.run_path(str(STACKS / "__main__.py"), run_name="__main__")
    return exports


def test_the_program_reads_the_stack_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Pulumi runs the program from the project folder; build contexts are rendered under it.
    monkeypatch.chdir(tmp_path)
    answers = OfflineAnswers("us-east-1")
    exports = run_program(
        monkeypatch, "prod", environment_data("prod"), region="us-east-1", mocks=answers
    )
    asyncio.get_event_loop().run_until_complete(wait_for_rpcs())
    assert (tmp_path / ".fermion" / "contexts" / "prod-embed" / "Dockerfile").is_file()
    assert exports["environment"] == "prod"
    assert exports["region"] == "us-east-1"
    assert exports["cluster_name"] is not None
    assert set(exports) >= {"kubeconfig", "bucket", "registry_url", "vpc_id", "images"}
    assert set(exports["images"]) == {"embed", "classifier", "reranker", "tabular"}


def test_bad_config_stops_the_program_with_a_clean_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = environment_data("dev")
    data["services"][0]["replicas"] = {"min": 3, "max": 2}
    with pytest.raises(pulumi.RunError) as info:
        run_program(monkeypatch, "dev", data)
    message = str(info.value)
    assert "stack 'dev'" in message
    assert "services[0].replicas.max: max must be at least min (3)" in message


def test_a_stack_without_an_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(pulumi.RunError, match=r"stack 'qa' has no `fermion:environment`"):
        run_program(monkeypatch, "qa", None)


def test_run_by_hand_it_says_where_it_runs_instead_of_a_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(STACKS / "__main__.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "runs under the Pulumi engine: `fermion up ENV`, or `pulumi up`" in done.stderr
    assert "fermion plan ENV" in done.stderr
