"""`fermion plan`: the stack program run in-process under Pulumi's mocks, recorded as a graph.

Nothing here reaches a cloud. Every resource the program registers is recorded with its type,
name, parent and inputs as registered. The run is a preview: values a provider computes (ARNs,
endpoints, ids) stay unknown, as they would in `pulumi preview`. The few lookups the program
makes (zones, instance offerings, add-on versions) get offline answers, listed in
`Plan.assumptions`. It is not a substitute for `pulumi preview`, which asks AWS.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.output import Unknown
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.settings import SETTINGS
from pulumi.runtime.stack import wait_for_rpcs

from fermion.components.runtime_image import DEFAULT_CONTEXT_DIR
from fermion.environments.errors import FermionError
from fermion.environments.spec import EnvironmentSpec
from fermion.policies import Finding, Resource, apply_waivers, evaluate
from fermion.stacks import program
from fermion.stacks.cost import Cost, estimate_cost
from fermion.stacks.placeholders import placeholder_state
from fermion.stacks.planned import PlannedResource

__all__ = [
    "Finding",
    "Plan",
    "PlanError",
    "PlannedResource",
    "check_policies",
    "plan_environment",
]

UNKNOWN = "(known after up)"
SECRET = "[secret]"
_ZONE_LETTERS = "abcdef"


class PlanError(FermionError):
    """The stack program stopped while it was being planned."""

    def __init__(self, env: str, problem: str) -> None:
        super().__init__(f"plan of {env!r} failed: {problem}")


@dataclass(frozen=True)
class Plan:
    """What `pulumi up` would declare for one environment, read offline."""

    environment: str
    resources: list[PlannedResource]
    outputs: dict[str, Any]
    cost: Cost
    findings: list[Finding] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The `fermion plan --json` document."""
        return {
            "environment": self.environment,
            "resources": [
                {
                    "urn": r.urn,
                    "type": r.type,
                    "name": r.name,
                    "parent": r.parent,
                    "inputs": r.inputs,
                }
                for r in self.resources
            ],
            "outputs": self.outputs,
            "cost": self.cost.to_json(),
            "findings": [
                {"policy": f.policy, "level": f.level, "urn": f.urn, "message": f.message}
                | ({} if f.waived is None else {"waived": f.waived})
                for f in self.findings
            ],
            "assumptions": self.assumptions,
        }

    def children(self) -> dict[str | None, list[PlannedResource]]:
        """Resources by parent URN (None for the top level), in plan order."""
        return _by_parent(self.resources)


class OfflineAnswers(pulumi.runtime.Mocks):
    """Answers the program's lookups without AWS, and notes each assumption it makes."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.assumptions: dict[str, str] = {}
        self._zones = [f"{region}{letter}" for letter in _ZONE_LETTERS]

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        # Inputs come back as state, with marked placeholders for the ids, names and ARNs
        # AWS assigns, so documents built from them read in full; the rest stays unknown.
        return placeholder_state(args.typ, args.name, dict(args.inputs), self.region)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        token = args.token
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            first = ", ".join(self._zones[:3])
            self._assume("zones", f"the region's zones are named {first}, ... in order")
            return {"names": self._zones, "zoneIds": self._zones, "id": self.region}, []
        if token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            self._assume("offerings", "every zone offers every instance type of every shape")
            wanted = [v for f in args.args.get("filters", []) for v in f.get("values", [])]
            types = [t for t in wanted for _ in self._zones]
            locations = [z for _ in wanted for z in self._zones]
            return {
                "instanceTypes": types,
                "locations": locations,
                "locationTypes": ["availability-zone"] * len(types),
                "id": self.region,
            }, []
        if token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region, "id": self.region}, []
        if token == "aws:eks/getAddonVersion:getAddonVersion":
            self._assume("addons", "managed add-on versions are AWS's defaults, looked up by up")
            return {"version": UNKNOWN, "id": str(args.args.get("addonName", ""))}, []
        if token == "aws:ec2/getSubnet:getSubnet":
            self._assume("subnets", "the given subnets are spread over the region's zones")
            index = int.from_bytes(str(args.args.get("id", "")).encode()) % 3
            return {"availabilityZone": self._zones[index], "id": args.args.get("id")}, []
        if token == "aws:ec2/getVpc:getVpc":
            return {"cidrBlock": UNKNOWN, "id": args.args.get("id")}, []
        return {"accountId": UNKNOWN, "userName": UNKNOWN, "password": UNKNOWN}, []

    def _assume(self, key: str, text: str) -> None:
        self.assumptions.setdefault(key, text)


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, also keeping each registration's parent and inputs."""

    def __init__(self, answers: OfflineAnswers) -> None:
        super().__init__(answers)
        self.recorded: list[PlannedResource] = []
        # (scratch folder, what to show instead): the plan renders build contexts into a
        # scratch folder, but shows the paths `pulumi up` would use, so plans can be diffed.
        self.alias: tuple[str, str] | None = None

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            parent = request.parent or None
            if parent is not None and parent.split("::")[2] == "pulumi:pulumi:Stack":
                parent = None
            inputs = rpc.deserialize_properties(request.object, keep_unknowns=True)
            self.recorded.append(
                PlannedResource(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=parent,
                    inputs=_plain(inputs, self.alias),
                    custom=bool(request.custom),
                )
            )
        return response


def plan_environment(
    spec: EnvironmentSpec,
    context_dir: Path | None = None,
    answers: OfflineAnswers | None = None,
    policy: bool = True,
) -> Plan:
    """Run the stack program for the checked `spec` under mocks and record what it declares.
    `answers` answers its lookups; offline assumptions unless given (`plan --aws` asks AWS).
    With `policy`, the policy pack's rules run over what it declares."""
    answers = OfflineAnswers(spec.region) if answers is None else answers
    monitor = _RecordingMonitor(answers)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        pulumi.runtime.set_mocks(
            answers, project="fermion", stack=spec.name, preview=True, monitor=monitor
        )
        pulumi.runtime.set_all_config({"aws:region": spec.region})
        with tempfile.TemporaryDirectory(prefix="fermion-plan-") as scratch:
            contexts = Path(scratch) if context_dir is None else context_dir
            if context_dir is None:
                monitor.alias = (scratch, str(DEFAULT_CONTEXT_DIR))
            try:
                program.main(spec, context_dir=contexts)
                loop.run_until_complete(wait_for_rpcs())
                outputs = loop.run_until_complete(_stack_outputs())
            except pulumi.RunError as exc:
                raise PlanError(spec.name, str(exc)) from None
    finally:
        # A program that stopped with an error (AWS's zones fewer than the network wants, under
        # --aws) leaves registrations in flight: end them here, so that they do not print as
        # destroyed, nor hold the next plan in this process to a closed loop.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        SETTINGS.outputs.clear()
        asyncio.set_event_loop(None)
        loop.close()
    resources = _tree_order(monitor.recorded)
    return Plan(
        environment=spec.name,
        resources=resources,
        outputs=outputs,
        cost=estimate_cost(resources, spec.shapes),
        findings=apply_waivers(check_policies(resources), spec.policy_waivers) if policy else [],
        assumptions=sorted(answers.assumptions.values()),
    )


def check_policies(resources: Sequence[PlannedResource]) -> list[Finding]:
    """The policy pack's findings on the cloud and Kubernetes objects of a plan."""
    return evaluate(
        [Resource(r.urn, r.type, r.name, r.inputs, r.parent) for r in resources if r.custom]
    )


def _tree_order(resources: list[PlannedResource]) -> list[PlannedResource]:
    """Depth first, each resource's children by type then name: the same for every run, so
    plans can be diffed. (Registration order depends on when each Output resolved.)"""
    children = _by_parent(resources)
    ordered: list[PlannedResource] = []

    def visit(parent: str | None) -> None:
        for resource in sorted(children.get(parent, []), key=lambda r: (r.type, r.name)):
            ordered.append(resource)
            visit(resource.urn)

    visit(None)
    return ordered


def _by_parent(resources: Sequence[PlannedResource]) -> dict[str | None, list[PlannedResource]]:
    children: dict[str | None, list[PlannedResource]] = {}
    for resource in resources:
        children.setdefault(resource.parent, []).append(resource)
    return children


async def _stack_outputs() -> dict[str, Any]:
    stack = pulumi.runtime.get_root_resource()
    exported: Mapping[str, Any] = getattr(stack, "outputs", {})
    return {name: await _value(value) for name, value in exported.items()}


async def _value(value: Any) -> Any:
    if isinstance(value, pulumi.Output):
        if await value.is_secret():
            return SECRET
        if not await value.is_known():
            return UNKNOWN
        return await _value(await value.future())
    if isinstance(value, dict):
        return {str(k): await _value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [await _value(v) for v in value]
    return _plain(value)


def _plain(value: Any, alias: tuple[str, str] | None = None) -> Any:
    """Registered inputs as JSON: unknowns and secrets are named, resources become URNs."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            inner = value.get("value")
            # A secret mapping keeps its keys (a Secret's stringData names its files), so the
            # object still reads as what it is; only the values hide.
            if isinstance(inner, dict) and rpc._special_sig_key not in inner:
                return {str(k): SECRET for k in sorted(inner, key=str)}
            return SECRET
        # Sorted: the wire's maps carry no order, and a plan must read the same every run.
        return {str(k): _plain(value[k], alias) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_plain(v, alias) for v in value]
    if alias is not None and isinstance(value, str) and value.startswith(alias[0]):
        return alias[1] + value[len(alias[0]) :]
    if isinstance(value, Unknown) or value == rpc.UNKNOWN:
        return UNKNOWN
    if isinstance(value, float) and value.is_integer():
        # The wire carries every number as a double; counts and sizes read better as integers.
        return int(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, pulumi.Resource):
        return UNKNOWN
    return str(value)
