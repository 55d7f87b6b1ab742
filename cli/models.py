"""`fermion models`: push a model into the environment's store, list its versions, pull one back.

The store is `s3://<bucket>/<service>/<version>/`: the model's files and a manifest.json of their
sums, written last, so that a version is published exactly when its manifest exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from fermion.cli.console import err, out, print_json
from fermion.cli.options import StackEnv, StacksDir

if TYPE_CHECKING:
    from rich.progress import Progress

    from fermion.cli.stack_target import CheckedEnvironment

app = typer.Typer(
    name="models",
    help="Models in the environment's store: push a file or folder, list versions, pull one.",
    no_args_is_help=True,
)

Service = Annotated[
    str, typer.Argument(help="Service name, as under `services:` in the environment.")
]
Bucket = Annotated[
    str | None,
    typer.Option(
        "--bucket",
        help="The model bucket. Default: the environment's storage.bucket, else the `bucket` "
        "output of its stack (as `fermion outputs ENV` shows it).",
        show_default=False,
    ),
]
Version = Annotated[
    str | None,
    typer.Option(
        "--version",
        help="Model version: the folder under the service. Default: the service's model.version.",
        show_default=False,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON, for scripts.")]


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@dataclass(frozen=True)
class _Bar:
    """A rich progress bar as the store's TransferProgress: bytes, rate and time left."""

    progress: Progress
    label: str

    def start(self, total_bytes: int) -> None:
        self.progress.add_task(self.label, total=total_bytes)

    def advance(self, sent_bytes: int) -> None:
        for task in self.progress.task_ids:
            self.progress.advance(task, sent_bytes)


@contextmanager
def _progress(label: str, quiet: bool) -> Iterator[_Bar | None]:
    if quiet or not err.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as progress:
        yield _Bar(progress, label)


def _store(
    env: str, stacks_dir: Path | None, bucket: str | None
) -> tuple[CheckedEnvironment, str, Any]:
    from fermion.cli.stack_target import check_environment

    return _open_store(check_environment(env, stacks_dir), env, bucket)


def _open_store(
    checked: CheckedEnvironment, env: str, bucket: str | None
) -> tuple[CheckedEnvironment, str, Any]:
    """The store's bucket and an S3 client for it, once the bucket is known to be there."""
    from fermion.stacks.model_store_access import (
        BucketUnknownError,
        model_bucket,
        require_bucket,
        s3_client,
    )

    try:
        name = model_bucket(checked.spec, env, bucket)
    except BucketUnknownError:
        name = _stack_bucket(checked)
    client = s3_client(checked.spec.region)
    require_bucket(client, name, env)
    return checked, name, client


def _stack_bucket(checked: CheckedEnvironment) -> str:
    """The `bucket` output of the environment's stack: the name AWS gave the bucket at up."""
    from fermion.cli.stack_target import open_environment
    from fermion.environments.errors import FermionError
    from fermion.stacks.model_store_access import BucketUnknownError

    try:
        outputs = open_environment(checked, create=False, aws=None).stack.outputs()
    except FermionError as exc:
        raise BucketUnknownError(checked.env, str(exc).rstrip(".")) from None
    found = outputs.get("bucket")
    if found is None or not isinstance(found.value, str):
        raise BucketUnknownError(checked.env, "they have no `bucket`; run `fermion up` first")
    return found.value


@app.command("push")
def push(
    env: StackEnv,
    service: Service,
    path: Annotated[
        Path, typer.Argument(help="The model file, or the folder of its files.", show_default=False)
    ],
    version: Version = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the version if it is published already.")
    ] = False,
    set_version: Annotated[
        bool,
        typer.Option(
            "--set-version",
            help="Then set the service's model.version in Pulumi.ENV.yaml to this version, "
            "changing nothing else in the file.",
        ),
    ] = False,
    bucket: Bucket = None,
    stacks_dir: StacksDir = None,
    as_json: AsJson = False,
) -> None:
    """Upload a model file or folder to s3://BUCKET/SERVICE/VERSION/ and publish it.

    Large files go up in parallel parts. A re-run sends only what is missing, and the version is
    published (its manifest.json written) only once every file is there.
    """
    from fermion.cli.stack_target import check_environment
    from fermion.stacks.model_push import local_files, push_model
    from fermion.stacks.model_store_access import ModelLocation, find_service

    # What can be checked here comes first: the service, the version and the files.
    checked = check_environment(env, stacks_dir)
    spec_service = find_service(checked.spec, env, service)
    chosen = spec_service.model.version if version is None else version
    _check_version(chosen)
    files = local_files(path)
    checked, name, client = _open_store(checked, env, bucket)
    location = ModelLocation(name, service, chosen)
    with _progress(f"{service} {chosen}", as_json) as bar:
        result = push_model(client, location, files, force=force, progress=bar)
    changed = False
    if set_version:
        from fermion.environments.stack_file_edit import set_model_version

        changed = set_model_version(checked.file, env, service, chosen)
    if as_json:
        print_json({**result.as_json(), "set_version": changed})
        return
    counted = _count(result.files, "file")
    if result.already_published:
        out.print(
            f"{escape(location.uri)} is already published with these {counted} "
            f"({_human(result.total_bytes)}); nothing was sent."
        )
    else:
        kept = result.files - result.sent_files
        resumed = f"; {_count(kept, 'file')} were there already" if kept else ""
        out.print(
            f"Published {escape(location.uri)}: {counted}, {_human(result.total_bytes)} "
            f"({_human(result.sent_bytes)} sent{resumed})."
        )
    if changed:
        out.print(f"Set {service}'s model.version to {chosen!r} in {escape(str(checked.file))}.")
    elif set_version:
        out.print(f"{service}'s model.version is {chosen!r} already.")
    elif chosen != spec_service.model.version:
        out.print(
            f"[dim]{service} serves version {spec_service.model.version!r}; pass --set-version "
            f"to serve {chosen!r}.[/]"
        )


def _check_version(version: str) -> None:
    import re

    from fermion.environments.errors import FermionError

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", version):
        raise FermionError(
            f"model version {version!r} is not a version name. Use up to 64 letters, digits, "
            "'.', '_' and '-', beginning with a letter or digit"
        )


@app.command("ls")
def ls(
    env: StackEnv,
    service: Annotated[
        str | None,
        typer.Argument(help="Only this service. Default: every service.", show_default=False),
    ] = None,
    bucket: Bucket = None,
    stacks_dir: StacksDir = None,
    as_json: AsJson = False,
) -> None:
    """List the model versions in the store: files, size, date, whether published, and which
    version each service is set to serve."""
    from fermion.stacks.model_store_access import find_service
    from fermion.stacks.model_versions import list_versions

    checked, name, client = _store(env, stacks_dir, bucket)
    if service is None:
        services = [s for s in checked.spec.services if s.model.uri is None]
    else:
        services = [find_service(checked.spec, env, service)]
    versions = [v for s in services for v in list_versions(client, name, s.name, s.model.version)]
    if as_json:
        print_json({"bucket": name, "versions": [v.as_json() for v in versions]})
        return
    from rich.table import Table

    table = Table(title=f"s3://{name}/", title_justify="left", box=None)
    for column in ("service", "version", "files", "size", "modified", "state", "serving"):
        table.add_column(column, justify="right" if column in ("files", "size") else "left")
    for v in versions:
        state = "published" if v.published else ("missing" if v.files == 0 else "unpublished")
        table.add_row(
            v.service,
            v.version,
            str(v.files),
            _human(v.size),
            "" if v.modified is None else v.modified.strftime("%Y-%m-%d %H:%M"),
            state,
            "serving" if v.serving else "",
        )
    out.print(table)


@app.command("pull")
def pull(
    env: StackEnv,
    service: Service,
    dest: Annotated[
        Path, typer.Argument(help="A new or empty folder to download into.", show_default=False)
    ],
    version: Version = None,
    bucket: Bucket = None,
    stacks_dir: StacksDir = None,
    as_json: AsJson = False,
) -> None:
    """Download a published version into DEST, checking every file against its manifest."""
    from fermion.stacks.model_store_access import ModelLocation, find_service
    from fermion.stacks.model_versions import pull_model

    checked, name, client = _store(env, stacks_dir, bucket)
    spec_service = find_service(checked.spec, env, service)
    chosen = spec_service.model.version if version is None else version
    location = ModelLocation(name, service, chosen)
    with _progress(f"{service} {chosen}", as_json) as bar:
        files = pull_model(client, location, dest, progress=bar)
    if as_json:
        print_json({"uri": location.uri, "dest": str(dest), "files": files})
        return
    out.print(
        f"Pulled {escape(location.uri)} into {escape(str(dest))}: {_count(len(files), 'file')}, "
        f"{_human(sum(files.values()))}, each checked against manifest.json."
    )
