"""`fermion plan ENV --aws`: the plan's lookups answered by AWS instead of offline assumptions.

The stack program looks up the region's zones, the zones that sell each pool's instance types,
and the default version of each managed EKS add-on. Offline, `OfflineAnswers` assumes them; here
`AwsAnswers` asks AWS, through the same lookups as `fermion doctor` (`fermion.stacks.aws_lookups`).
Everything is asked before the program runs, so a credentials problem stops the plan with its
own message instead of surfacing inside Pulumi's mock engine. Everything else the program looks
up keeps its offline answer, and stays listed as an assumption.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pulumi

from fermion.components.cluster import MANAGED_ADDONS
from fermion.environments.spec import EnvironmentSpec
from fermion.stacks.aws_errors import AwsPermissionError, AwsRequestError, aws_errors
from fermion.stacks.aws_lookups import Aws, Identity, LookupUnavailableError, Zone
from fermion.stacks.plan import OfflineAnswers

__all__ = ["AwsAnswers", "aws_answers"]

_ZONES = "aws:index/getAvailabilityZones:getAvailabilityZones"
_OFFERINGS = "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings"
_ADDON = "aws:eks/getAddonVersion:getAddonVersion"


class AwsAnswers(OfflineAnswers):
    """The program's zone, offering and add-on lookups, answered from AWS answers read up front.

    `asked` says, for people and for `--json`, what AWS answered.
    """

    def __init__(
        self,
        region: str,
        identity: Identity,
        zones: list[Zone],
        offerings: dict[str, list[str]],
        addons: dict[tuple[str, str], str | None],
        aws: Aws,
    ) -> None:
        super().__init__(region)
        self.identity = identity
        self.asked: dict[str, str] = {
            "account": identity.account,
            "zones": ", ".join(zone.name for zone in zones),
        }
        self._aws_zones = zones
        self._offerings = dict(offerings)
        self._addons = dict(addons)
        self._aws = aws

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        if args.token == _ZONES:
            names = [zone.name for zone in self._aws_zones]
            ids = [zone.id for zone in self._aws_zones]
            return {"names": names, "zoneIds": ids, "id": self.region}, []
        if args.token == _OFFERINGS:
            wanted = [v for f in args.args.get("filters", []) for v in f.get("values", [])]
            missing = [t for t in wanted if t not in self._offerings]
            if missing:
                with aws_errors(self.region):
                    self._offerings.update(self._aws.offering_zones(missing))
            pairs = [(t, zone) for t in wanted for zone in self._offerings[t]]
            self.asked["offerings"] = "the zones that sell each pool's instance types"
            return {
                "instanceTypes": [t for t, _ in pairs],
                "locations": [zone for _, zone in pairs],
                "locationTypes": ["availability-zone"] * len(pairs),
                "id": self.region,
            }, []
        if args.token == _ADDON:
            key = (str(args.args.get("addonName", "")), str(args.args.get("kubernetesVersion", "")))
            version = self._addons.get(key)
            if version is None:
                return super().call(args)
            self.asked["addons"] = "the default version of each managed add-on"
            return {"version": version, "id": key[0]}, []
        return super().call(args)


def aws_answers(spec: EnvironmentSpec, aws: Aws | None = None) -> AwsAnswers:
    """Ask AWS everything the plan of `spec` looks up: who the caller is (which fails first and
    clearly without credentials), the zones, the offerings of every shape the environment uses,
    and the managed add-ons' default versions."""
    aws = Aws(spec.region) if aws is None else aws
    identity = aws.identity()
    zones = aws.availability_zones()
    offerings = aws.offering_zones(_instance_types(spec))
    addons: dict[tuple[str, str], str | None] = {}
    version = spec.cluster.version
    reason = None
    for addon in MANAGED_ADDONS:
        try:
            with aws_errors(spec.region, every=True):
                addons[(addon, version)] = aws.addon_version(addon, version)
        except LookupUnavailableError as exc:
            # The plan can do without: these versions stay unknown, as they do offline.
            reason = f"{exc.operation} is not available, {exc.why}"
            break
        except AwsPermissionError as exc:
            reason = f"AWS refused {exc.operation}"
            break
        except AwsRequestError as exc:
            reason = f"{exc.operation} failed with {exc.code}"
            break
    answers = AwsAnswers(spec.region, identity, zones, offerings, addons, aws)
    if reason is not None:
        answers.assumptions["addons"] = (
            f"managed add-on versions are AWS's defaults, looked up by up (AWS did not answer "
            f"here: {reason})"
        )
    return answers


def _instance_types(spec: EnvironmentSpec) -> Iterable[str]:
    shapes = [spec.cluster.system_nodes.shape, *(pool.shape for pool in spec.node_pools)]
    return sorted({it.name for name in shapes for it in spec.shapes.get(name).instance_types})
