"""`fermion models push` names a wrong path or service before it looks for the store."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fermion.cli import app

from ..conftest import STACKS


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["embed", "/nonexistent/model.pt"], "model path /nonexistent/model.pt does not exist"),
        (["nosuch", "/etc/hostname"], "has no service 'nosuch'"),
    ],
)
def test_local_mistakes_are_named_before_the_bucket_is_sought(
    args: list[str], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No bucket is named and no stack can be read: the bucket could not be found either.
    monkeypatch.setenv("PATH", "/nonexistent")
    result = CliRunner().invoke(app, ["models", "push", "dev", *args, "--stacks-dir", str(STACKS)])
    assert result.exit_code == 1
    assert named in result.stderr
    assert "bucket" not in result.stderr
