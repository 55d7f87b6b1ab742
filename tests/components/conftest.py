"""Pulumi's mocks: every registered resource and invoke is recorded, nothing reaches a cloud."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from pulumi.runtime.stack import wait_for_rpcs

from fermion.components.cluster_core import ClusterCore

RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"


def plain(value: Any) -> Any:
    """Registered inputs with each secret unwrapped to its value, as Kubernetes gets them."""
    sig = pulumi.runtime.rpc._special_sig_key
    if isinstance(value, dict):
        if value.get(sig) == pulumi.runtime.rpc._special_secret_sig:
            return plain(value["value"])
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


@dataclass
class Recorder(pulumi.runtime.Mocks):
    """Answers registrations with their inputs (plus fixed outputs by type) and records them."""

    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: list[pulumi.runtime.MockResourceArgs] = field(default_factory=list)
    calls: list[pulumi.runtime.MockCallArgs] = field(default_factory=list)
    call_results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        state = {**args.inputs, **self.outputs.get(args.typ, {})}
        if args.typ == RANDOM_PASSWORD:
            # Stands for a fresh random value: new for each name and each set of keepers.
            state.setdefault("result", f"{args.name}/{json.dumps(args.inputs.get('keepers'))}")
        return f"{args.name}-id", state

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


@dataclass(frozen=True)
class Registration:
    """What the engine is told about one resource: the parts the Recorder does not keep."""

    type: str
    name: str
    urn: str
    parent: str
    provider: str
    dependencies: tuple[str, ...]
    alias_types: tuple[str, ...]
    alias_names: tuple[str, ...] = ()


@pytest.fixture
def registrations(mocks: Recorder) -> Iterator[list[Registration]]:
    # MockResourceArgs carries no parent, dependencies or aliases; the monitor's requests do.
    monitor: Any = pulumi.runtime.settings.get_monitor()
    register = monitor.RegisterResource
    seen: list[Registration] = []

    def recording(request: Any) -> Any:
        response = register(request)
        seen.append(
            Registration(
                request.type,
                request.name,
                response.urn,
                request.parent,
                request.provider,
                tuple(request.dependencies),
                tuple(alias.spec.type for alias in request.aliases),
                tuple(alias.spec.name for alias in request.aliases),
            )
        )
        return response

    monitor.RegisterResource = recording
    yield seen
    monitor.RegisterResource = register


def core(
    name: str = "fermion-dev",
    subnet_ids: Sequence[str] = ("subnet-a", "subnet-b", "subnet-c"),
    subnet_zones: Sequence[str] = ("us-west-2a", "us-west-2b", "us-west-2c"),
    region: str = "us-west-2",
) -> ClusterCore:
    """A cluster for components to join, with a Kubernetes provider of its own (under mocks)."""
    return ClusterCore(
        name=name,
        provider=k8s.Provider("k8s", kubeconfig="{}"),
        region=region,
        subnet_ids=list(subnet_ids),
        subnet_zones=list(subnet_zones),
    )


# The EKS node group API's taint effects, as a pod's tolerations name them.
_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule",
            "NO_EXECUTE": "NoExecute"}  # fmt: skip


def tolerates(tolerations: Sequence[Mapping[str, Any]], taint: Mapping[str, str]) -> bool:
    """Whether one of a pod's tolerations lets it past a node group's taint (as the EKS API
    writes it), by Kubernetes' matching rules."""
    effect = _EFFECTS[taint["effect"]]
    for toleration in tolerations:
        exists = toleration.get("operator", "Equal") == "Exists"
        key = toleration.get("key", "")
        if key != taint["key"] and not (exists and key == ""):
            continue
        if not exists and toleration.get("value", "") != taint.get("value", ""):
            continue
        if toleration.get("effect", "") in ("", effect):
            return True
    return False


def schedulable(pod: Mapping[str, Any], group: Mapping[str, Any]) -> bool:
    """Whether a pod spec's nodeSelector and tolerations let it onto a node group's nodes (the
    group's inputs as registered: its labels and taints)."""
    labels = group.get("labels") or {}
    selector = pod.get("nodeSelector") or {}
    if any(labels.get(key) != value for key, value in selector.items()):
        return False
    repelling = [t for t in group.get("taints") or [] if t["effect"] != "PREFER_NO_SCHEDULE"]
    return all(tolerates(pod.get("tolerations") or [], taint) for taint in repelling)


def settle() -> None:
    """Wait for every outstanding registration, so the recorder holds whole components."""
    asyncio.get_event_loop().run_until_complete(wait_for_rpcs())


def resolve(output: pulumi.Output[Any]) -> Any:
    """The value of an Output under mocks."""
    loop = asyncio.get_event_loop()
    future: asyncio.Future[Any] = loop.create_future()
    output.apply(lambda value: future.set_result(value) if not future.done() else None)
    return loop.run_until_complete(future)
