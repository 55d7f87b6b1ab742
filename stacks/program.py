"""The Pulumi program: one stack per environment, configured by `fermion:environment`.

This module is wiring only. It reads the stack's config into an EnvironmentSpec (bad input stops
here, before any resource is declared), builds the environment's `Platform` and exports what
it holds. `pulumi up` runs it through `stacks/__main__.py`; `fermion plan` runs it in-process
under Pulumi's mocks.
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from fermion.components.platform import Platform, PlatformArgs
from fermion.components.runtime_image import DEFAULT_CONTEXT_DIR
from fermion.environments.errors import FermionError
from fermion.environments.spec import EnvironmentSpec
from fermion.environments.stack_files import ENVIRONMENT_KEY, REGION_KEY, parse_environment


def main(spec: EnvironmentSpec | None = None, context_dir: Path | None = None) -> None:
    """Declare an environment: `spec` when given (`fermion plan` has checked it already), else
    the one the current stack's config holds (`pulumi up`)."""
    if spec is None:
        spec = spec_from_config()
    platform = Platform(
        spec.name,
        PlatformArgs(spec, context_dir=DEFAULT_CONTEXT_DIR if context_dir is None else context_dir),
    )
    pulumi.export("environment", spec.name)
    pulumi.export("region", spec.region)
    for key, value in platform.outputs.items():
        pulumi.export(key, value)


def spec_from_config() -> EnvironmentSpec:
    """The current stack's `fermion:environment` setting, checked."""
    env = pulumi.get_stack()
    data = pulumi.Config("fermion").get_object("environment")
    region = pulumi.Config("aws").get("region")
    if data is None:
        raise pulumi.RunError(
            f"stack {env!r} has no `{ENVIRONMENT_KEY}` setting. Add it to stacks/Pulumi.{env}.yaml "
            "(an empty object, {}, takes every default); see docs/environment.md"
        )
    try:
        return parse_environment(
            data, env, region=region, source=f"stack {env!r} ({ENVIRONMENT_KEY}, {REGION_KEY})"
        )
    except FermionError as exc:
        # RunError prints the message alone, without a Python traceback.
        raise pulumi.RunError(str(exc)) from None
