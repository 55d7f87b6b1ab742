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
