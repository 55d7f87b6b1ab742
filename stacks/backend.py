"""Where an environment's Pulumi state lives: the record `fermion bootstrap` writes, and the choice
every stack operation makes between it and a backend the user chose already.

`fermion bootstrap ENV` makes an S3 bucket and a KMS key in the environment's account and region,
and records them in `.fermion/backend.json` beside the stack files (one entry per environment).
A stack operation then asks `choose_backend`, which prefers, in order:

1. `PULUMI_BACKEND_URL`, when it is set;
2. the backend of `pulumi login` (the `current` entry of `~/.pulumi/credentials.json`, or of
   `$PULUMI_HOME/credentials.json`);
3. the bootstrap record of the environment: `s3://<bucket>?region=<region>` with the secrets
   provider `awskms://alias/<alias>?region=<region>`.

Nothing here talks to AWS.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from fermion.environments.errors import FermionError

__all__ = [
    "BACKEND_FILE",
    "BackendChoice",
    "BackendRecordError",
    "StateBackend",
    "backend_file",
    "choose_backend",
    "load_backend",
    "pulumi_login_url",
    "save_backend",
]

BACKEND_FILE = Path(".fermion") / "backend.json"
"""The record's place, relative to the folder of the stack files."""

_FORMAT = 1


class BackendRecordError(FermionError):
    """The bootstrap record cannot be read or is not what bootstrap writes."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        super().__init__(
            f"{path}: {problem}. Delete the file and run `fermion bootstrap ENV` again to "
            "write it anew."
        )


@dataclass(frozen=True)
class StateBackend:
    """The state bucket and secrets key that `fermion bootstrap` made for one environment."""

    environment: str
    account: str
    region: str
    bucket: str
    kms_key_id: str
    kms_alias: str  # with its `alias/` prefix

    @property
    def url(self) -> str:
        """The Pulumi backend URL: the bucket, in its own region whatever the default region."""
        return f"s3://{self.bucket}?region={self.region}"

    @property
    def secrets_provider(self) -> str:
        """The Pulumi secrets provider: the KMS key by its alias."""
        return f"awskms://{self.kms_alias}?region={self.region}"

    def to_json(self) -> dict[str, str]:
        """The record as stored, plus the URLs Pulumi reads."""
        return {**asdict(self), "url": self.url, "secrets_provider": self.secrets_provider}


BackendSource = Literal["PULUMI_BACKEND_URL", "pulumi login", "fermion bootstrap", "none"]


@dataclass(frozen=True)
class BackendChoice:
    """The backend a stack operation uses, and why.

    `url` is None only when `source` is "none": nothing was chosen and nothing bootstrapped.
    `secrets_provider` is None when the user's own backend is used: Pulumi's default for that
    backend applies (a passphrase for a DIY backend, the service's own keys for Pulumi Cloud).
    `record` is the bootstrap record, when there is one, even if another backend won.
    """

    source: BackendSource
    url: str | None
    secrets_provider: str | None
    record: StateBackend | None = None

    def env_vars(self) -> dict[str, str]:
        """What to set in the Pulumi workspace's environment to use this backend."""
        return {} if self.url is None else {"PULUMI_BACKEND_URL": self.url}

    def describe(self) -> str:
        """One line for people: the backend and where the choice came from."""
        if self.url is None:
            return (
                "no state backend: run `fermion bootstrap ENV` to make one in your account, or "
                "`pulumi login` to choose one"
            )
        return f"{self.url} (from {self.source})"


def backend_file(stacks_dir: Path) -> Path:
    """The bootstrap record of the environments whose stack files are in `stacks_dir`."""
    return stacks_dir / BACKEND_FILE


def load_backend(env: str, stacks_dir: Path) -> StateBackend | None:
    """The bootstrap record of `env`, or None when `fermion bootstrap ENV` has not run here."""
    return _read(backend_file(stacks_dir)).get(env)


def save_backend(backend: StateBackend, stacks_dir: Path) -> Path:
    """Record `backend` for its environment, keeping the other environments' records."""
    path = backend_file(stacks_dir)
    records = _read(path)
    records[backend.environment] = backend
    document = {
        "format": _FORMAT,
        "environments": {
            name: {k: v for k, v in asdict(r).items() if k != "environment"}
            for name, r in sorted(records.items())
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".json.tmp")
    scratch.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    scratch.replace(path)
    return path


def pulumi_login_url(
    environ: Mapping[str, str] | None = None, home: Path | None = None
) -> str | None:
    """The backend `pulumi login` chose, from its credentials file; None when never logged in."""
    environ = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    pulumi_home = environ.get("PULUMI_HOME")
    folder = Path(pulumi_home) if pulumi_home else home / ".pulumi"
    try:
        data = json.loads((folder / "credentials.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        # No file, or one Pulumi itself would not read: either way, nobody is logged in.
        return None
    current = data.get("current") if isinstance(data, dict) else None
    return current if isinstance(current, str) and current else None


def choose_backend(
    env: str,
    stacks_dir: Path,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> BackendChoice:
    """The backend a stack operation on `env` uses: the user's own choice first, then the
    bootstrap record. `environ` and `home` default to the process's own."""
    environ = os.environ if environ is None else environ
    record = load_backend(env, stacks_dir)
    explicit = environ.get("PULUMI_BACKEND_URL")
    if explicit:
        return BackendChoice("PULUMI_BACKEND_URL", explicit, None, record)
    login = pulumi_login_url(environ, home)
    if login is not None:
        return BackendChoice("pulumi login", login, None, record)
    if record is not None:
        return BackendChoice("fermion bootstrap", record.url, record.secrets_provider, record)
    return BackendChoice("none", None, None, None)


def _read(path: Path) -> dict[str, StateBackend]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise BackendRecordError(path, f"cannot be read ({exc.strerror})") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise BackendRecordError(path, f"is not valid JSON ({exc})") from None
    environments = document.get("environments") if isinstance(document, dict) else None
    if not isinstance(environments, dict):
        raise BackendRecordError(path, "has no `environments` object")
    return {str(name): _record(path, str(name), raw) for name, raw in environments.items()}


def _record(path: Path, env: str, raw: Any) -> StateBackend:
    fields = ("account", "region", "bucket", "kms_key_id", "kms_alias")
    if not isinstance(raw, dict) or not all(isinstance(raw.get(f), str) for f in fields):
        raise BackendRecordError(
            path, f"the entry of {env!r} lacks one of {', '.join(fields)}, each a string"
        )
    return StateBackend(environment=env, **{f: raw[f] for f in fields})
