"""Pulumi's mocks: every registered resource and invoke is recorded, nothing reaches a cloud."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pytest
from pulumi.runtime.stack import wait_for_rpcs


@dataclass
class Recorder(pulumi.runtime.Mocks):
    """Answers registrations with their inputs (plus fixed outputs by type) and records them."""

    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: list[pulumi.runtime.MockResourceArgs] = field(default_factory=list)
    calls: list[pulumi.runtime.MockCallArgs] = field(default_factory=list)
    call_results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        return f"{args.name}-id", {**args.inputs, **self.outputs.get(args.typ, {})}

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        self.calls.append(args)
        return self.call_results.get(args.token, {}), []

    def of_type(self, typ: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.resources if r.typ == typ]


@pytest.fixture
def mocks() -> Iterator[Recorder]:
    # A fresh event loop per test: Pulumi's runtime needs one, and earlier tests may have closed
    # theirs with asyncio.run().
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    recorder = Recorder()
    pulumi.runtime.set_mocks(recorder, project="fermion", stack="test", preview=False)
    yield recorder
    # Let every registration finish on this loop, so none is left for the next test's loop.
    settle()
    asyncio.set_event_loop(None)
    loop.close()


def settle() -> None:
    """Wait for every outstanding registration, so the recorder holds whole components."""
    asyncio.get_event_loop().run_until_complete(wait_for_rpcs())


def resolve(output: pulumi.Output[Any]) -> Any:
    """The value of an Output under mocks."""
    loop = asyncio.get_event_loop()
    future: asyncio.Future[Any] = loop.create_future()
    output.apply(lambda value: future.set_result(value) if not future.done() else None)
    return loop.run_until_complete(future)
