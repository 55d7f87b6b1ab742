"""The Pulumi CLI that stack operations drive: found on PATH, and new enough for the SDK.

The Automation API runs the `pulumi` binary for every operation. Without it, or with one older
than the SDK accepts, fermion stops before anything else with a message that says how to install
or upgrade it, and that `fermion plan ENV` needs no CLI at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import TYPE_CHECKING

from fermion.environments.errors import FermionError

if TYPE_CHECKING:
    from pulumi.automation import PulumiCommand
    from semver import VersionInfo

__all__ = [
    "INSTALL_DOCS",
    "PulumiCliBrokenError",
    "PulumiCliNotFoundError",
    "PulumiCliVersionError",
    "check_cli_version",
    "minimum_cli_version",
    "require_pulumi_cli",
]

INSTALL_DOCS = "https://www.pulumi.com/docs/install/"
_INSTALL = (
    f"Install it as {INSTALL_DOCS} describes: `curl -fsSL https://get.pulumi.com | sh` on Linux "
    "or macOS, or `brew install pulumi/tap/pulumi` with Homebrew; then open a new shell so that "
    "`pulumi` is on PATH, and check with `pulumi version`."
)
_OFFLINE = "`fermion plan ENV` works without it: an offline plan, with no cloud calls."
# The Automation API's own switch for skipping the version check; fermion honours it too.
SKIP_VERSION_CHECK_ENV = "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK"
_VERSION_TIMEOUT_S = 30.0


class PulumiCliNotFoundError(FermionError):
    """No `pulumi` binary on PATH."""

    def __init__(self, minimum: str) -> None:
        self.minimum = minimum
        super().__init__(
            f"the Pulumi CLI is not installed: no `pulumi` on PATH. Stack operations run it "
            f"through Pulumi's Automation API and need version {minimum} or newer. {_INSTALL} "
            f"{_OFFLINE}"
        )


class PulumiCliVersionError(FermionError):
    """A `pulumi` binary whose version the SDK does not accept."""

    def __init__(self, found: str, minimum: str, sdk: str, problem: str) -> None:
        self.found = found
        self.minimum = minimum
        super().__init__(
            f"the Pulumi CLI on PATH is version {found}, {problem}: fermion's Pulumi SDK "
            f"(pulumi {sdk}) needs a 3.x CLI, {minimum} or newer. Upgrade it with "
            f"`curl -fsSL https://get.pulumi.com | sh` or `brew upgrade pulumi` (see "
            f"{INSTALL_DOCS}), or set {SKIP_VERSION_CHECK_ENV}=true to run it as it is. {_OFFLINE}"
        )


class PulumiCliBrokenError(FermionError):
    """A `pulumi` binary that does not answer `pulumi version`."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        super().__init__(
            f"the Pulumi CLI at {path} did not answer `pulumi version` ({problem}). Reinstall it: "
            f"{_INSTALL} {_OFFLINE}"
        )


def minimum_cli_version() -> VersionInfo:
    """The oldest Pulumi CLI the installed Automation API accepts."""
    from pulumi.automation._minimum_version import _MINIMUM_VERSION

    return _MINIMUM_VERSION


def _sdk_version() -> str:
    from pulumi._version import version

    return str(version)


def check_cli_version(found: str, minimum: VersionInfo | None = None) -> VersionInfo:
    """The version `pulumi version` printed (`found`, e.g. "v3.200.0"), checked against
    `minimum` (default: the SDK's own minimum) as the Automation API checks it."""
    from semver import VersionInfo

    if minimum is None:
        minimum = minimum_cli_version()
    text = found.strip().removeprefix("v")
    try:
        version = VersionInfo.parse(text)
    except ValueError:
        raise PulumiCliVersionError(
            found.strip() or "(empty)", str(minimum), _sdk_version(), "which is not a version"
        ) from None
    if version.major > minimum.major:
        raise PulumiCliVersionError(
            str(version), str(minimum), _sdk_version(), "a newer major version than the SDK's"
        )
    if version.compare(minimum) < 0:
        raise PulumiCliVersionError(str(version), str(minimum), _sdk_version(), "too old")
    return version


def require_pulumi_cli() -> PulumiCommand:
    """The Pulumi CLI on PATH, checked, ready to hand to a LocalWorkspace."""
    from pulumi.automation import PulumiCommand

    minimum = minimum_cli_version()
    path = shutil.which("pulumi")
    if path is None:
        raise PulumiCliNotFoundError(str(minimum))
    if os.environ.get(SKIP_VERSION_CHECK_ENV) is None:
        check_cli_version(_run_version(path), minimum)
    try:
        # Checked above; the SDK would run `pulumi version` again only to check the same thing.
        return PulumiCommand(skip_version_check=True)
    except FileNotFoundError:
        # Removed from PATH between the two looks.
        raise PulumiCliNotFoundError(str(minimum)) from None
    except (OSError, subprocess.CalledProcessError) as exc:
        raise PulumiCliBrokenError(path, str(exc)) from None


def _run_version(path: str) -> str:
    env = {**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    try:
        done = subprocess.run(
            [path, "version"],
            capture_output=True,
            text=True,
            timeout=_VERSION_TIMEOUT_S,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PulumiCliBrokenError(path, f"no answer in {_VERSION_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise PulumiCliBrokenError(path, exc.strerror or str(exc)) from None
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()
        reason = detail[-1] if detail else "no message"
        raise PulumiCliBrokenError(path, f"exit code {done.returncode}: {reason}")
    return done.stdout
