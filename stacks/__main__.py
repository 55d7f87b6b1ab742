"""The Pulumi program: one stack per environment, configured by `fermion:environment`.

This module is wiring only. It reads the stack's config into an EnvironmentSpec (bad input stops
here, before any resource is declared) and exports what the environment will hold.
"""

from __future__ import annotations

import pulumi

from fermion.stacks.environment import ENVIRONMENT_KEY, REGION_KEY, parse_environment
from fermion.stacks.errors import FermionError


def main() -> None:
    env = pulumi.get_stack()
    data = pulumi.Config("fermion").get_object("environment")
    region = pulumi.Config("aws").get("region")
    if data is None:
        raise pulumi.RunError(
            f"stack {env!r} has no `{ENVIRONMENT_KEY}` setting. Add it to stacks/Pulumi.{env}.yaml "
            "(an empty object, {}, takes every default); see docs/environment.md"
        )
    try:
        spec = parse_environment(
            data, env, region=region, source=f"stack {env!r} ({ENVIRONMENT_KEY}, {REGION_KEY})"
        )
    except FermionError as exc:
        # RunError prints the message alone, without a Python traceback.
        raise pulumi.RunError(str(exc)) from None
    pulumi.export("environment", spec.name)
    pulumi.export("region", spec.region)
    pulumi.export("cluster_name", spec.cluster_name)
    pulumi.export("services", [s.name for s in spec.services])


main()
