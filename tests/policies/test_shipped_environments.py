"""The example environments pass every policy: no finding at all, so no mandatory one."""

from __future__ import annotations

import pytest

from fermion.environments import load_environment
from fermion.stacks.plan import plan_environment

from ..conftest import STACKS


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_shipped_environments_have_no_findings(env: str) -> None:
    plan = plan_environment(load_environment(env, STACKS))
    assert [f for f in plan.findings if f.level == "mandatory"] == []
    assert plan.findings == []
