"""Finding the Pulumi CLI and checking its version against the Automation API's minimum.

No stand-in `pulumi` binary: the missing CLI is a PATH without one, and the version check is
tested on the text `pulumi version` prints.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pulumi.automation._minimum_version import _MINIMUM_VERSION
from semver import VersionInfo

from fermion.stacks.pulumi_cli import (
    PulumiCliNotFoundError,
    PulumiCliVersionError,
    check_cli_version,
    minimum_cli_version,
    require_pulumi_cli,
)


def test_no_pulumi_on_path_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PulumiCliNotFoundError) as caught:
        require_pulumi_cli()
    message = str(caught.value)
    assert "the Pulumi CLI is not installed" in message
    assert "https://www.pulumi.com/docs/install/" in message
    assert "curl -fsSL https://get.pulumi.com | sh" in message
    assert "brew install pulumi/tap/pulumi" in message
    assert f"version {_MINIMUM_VERSION} or newer" in message
    assert "`fermion plan ENV` works without it" in message


def test_the_minimum_is_the_sdks_own() -> None:
    assert minimum_cli_version() == _MINIMUM_VERSION


@pytest.mark.parametrize("printed", ["v3.272.0\n", "3.1.0", "v3.300.1-dev.0"])
def test_a_new_enough_cli_passes(printed: str) -> None:
    assert check_cli_version(printed).major == 3


def test_an_old_cli_names_the_version_needed() -> None:
    with pytest.raises(PulumiCliVersionError) as caught:
        check_cli_version("v3.0.9", VersionInfo.parse("3.1.0"))
    message = str(caught.value)
    assert "version 3.0.9, too old" in message
    assert "3.1.0 or newer" in message
    assert "get.pulumi.com" in message
    assert "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK" in message


def test_a_cli_of_a_newer_major_version_is_refused() -> None:
    with pytest.raises(PulumiCliVersionError, match="newer major version"):
        check_cli_version("v4.0.0", VersionInfo.parse("3.1.0"))


def test_text_that_is_no_version_is_refused() -> None:
    with pytest.raises(PulumiCliVersionError, match="not a version"):
        check_cli_version("warning: something\n")
