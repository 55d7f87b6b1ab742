"""`fermion serve TARGET`: run the serving runtime locally, exactly as a runtime image runs it.

It renders the same build context an image is built from (serving.json and the server's code),
then starts `python -m server --config serving.json` inside it, as the image's entrypoint does;
only the model stays where it is instead of being fetched or baked in.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fermion.cli.build_sources import (
    Base,
    BuildSources,
    CaBundle,
    DockerfileSyntax,
    ExtraIndexUrl,
    FindLinks,
    IndexUrl,
)
from fermion.cli.console import out
from fermion.cli.options import StacksDir
from fermion.cli.server_options import ServerOptionValues, with_server_options
from fermion.environments.errors import FermionError

if TYPE_CHECKING:
    from fermion.runtime_images.server.config import ModelConfig, ServerConfig

_SERVE_MODULES = ("torch", "numpy", "orjson", "uvicorn")
_INLINE_ELEMENTS = 16
_READY_TIMEOUT_S = 600.0
TOKEN_VARIABLE = "FERMION_TOKEN"
# Double quotes, so that the shell fills in the token when the command is pasted.
AUTH_HEADER = f'-H "Authorization: Bearer ${TOKEN_VARIABLE}"'


class ServeDependencyError(FermionError):
    """The serving extra is not installed."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(
            f"fermion serve needs {', '.join(missing)}, which this environment lacks. Install "
            "the serving extra: pip install 'fermion[serve]'"
        )


class ServeOptionsError(FermionError):
    """Options of `fermion serve` that the serving runtime rejects."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"{problem}. See `fermion serve --help`")


class PortUnavailableError(FermionError):
    """The address and port to serve on cannot be had (another process holds the port)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)


def image_for_device(device: str) -> str:
    """The runtime image whose context `fermion serve` renders for `device`: the image a GPU
    shape gets when the device is CUDA (cuda or cuda:N), the image a CPU shape gets otherwise."""
    from fermion.environments.shapes import CPU_IMAGE, CUDA_IMAGE

    return CUDA_IMAGE if device.partition(":")[0] == "cuda" else CPU_IMAGE


@with_server_options(defaults={"host": "127.0.0.1", "log_level": "warning"})
def serve(
    target: Annotated[
        Path,
        typer.Argument(
            help="A TorchScript (.pt) or torch.export (.pt2) file, or a model folder (with a "
            "handler.py, or one model file). With --env: the name of one of its services.",
            show_default=False,
        ),
    ],
    image: Annotated[
        str | None, typer.Option(help="Runtime image whose context to run. Default: by device.")
    ] = None,
    context: Annotated[
        Path | None,
        typer.Option(help="Keep the rendered context in this folder (default: a temporary one)."),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            help="Serve the service TARGET of this environment as the cluster would: its "
            "format, inputs, batching, precision and model version, from the model store.",
            show_default=False,
        ),
    ] = None,
    model_path: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="With --env: a local model file or folder instead of the one in the store.",
            show_default=False,
        ),
    ] = None,
    bucket: Annotated[
        str | None,
        typer.Option(
            "--bucket",
            help="With --env: the model bucket, when the environment does not name it.",
            show_default=False,
        ),
    ] = None,
    stacks_dir: StacksDir = None,
    docker: Annotated[
        bool,
        typer.Option(
            "--docker",
            help="Run the runtime image itself (built first when the engine lacks it), with "
            "its entrypoint and serving.json, on the host network: only the model mount and "
            "the port differ from a pod.",
            rich_help_panel="Docker",
        ),
    ] = False,
    pip_packages: Annotated[
        list[str] | None,
        typer.Option(
            "--pip-package",
            help="With --docker: a requirement the model needs beyond the runtime "
            "(transformers==5.24.0); repeatable. A service's own come from its spec.",
            rich_help_panel="Docker",
            show_default=False,
        ),
    ] = None,
    base: Base = None,
    index_url: IndexUrl = None,
    extra_index_urls: ExtraIndexUrl = None,
    find_links: FindLinks = None,
    ca_bundle: CaBundle = None,
    dockerfile_syntax: DockerfileSyntax = None,
    *,
    options: ServerOptionValues,
) -> None:
    """Serve a model locally over the Open Inference Protocol (KServe V2), as the image would.

    `fermion serve --env ENV SERVICE` serves a service of an environment with its own settings
    and the version its model.version names, fetched from s3://BUCKET/SERVICE/VERSION/.
    `--docker` runs the service's runtime image instead of this Python.
    """
    missing = [m for m in _SERVE_MODULES if importlib.util.find_spec(m) is None]
    if missing and not docker:
        raise ServeDependencyError(missing)
    sources = BuildSources.from_options(
        base, index_url, extra_index_urls, find_links, ca_bundle, dockerfile_syntax
    )
    if not docker and (pip_packages or sources != BuildSources()):
        raise ServeOptionsError(
            "--pip-package and the build options (--base, --index-url, ...) go with --docker"
        )
    from fermion.runtime_images.render import render
    from fermion.runtime_images.server.__main__ import ListenError, listen_socket
    from fermion.runtime_images.server.config import (
        ConfigError,
        ServerConfig,
        model_config_from_options,
        server_config_from_options,
        tokens_from_environment,
    )
    from fermion.runtime_images.server.options import to_argv

    if env is None and (model_path is not None or bucket is not None):
        raise ServeOptionsError("--model and --bucket go with --env ENV SERVICE")
    if env is None and not target.exists():
        raise ServeOptionsError(f"model path {target} does not exist")
    if model_path is not None and not model_path.exists():
        raise ServeOptionsError(f"model path {model_path} does not exist")
    if options["auth_token_file"] is not None:
        # The server runs inside the rendered context, not in this folder.
        options["auth_token_file"] = Path(options["auth_token_file"]).resolve()
    try:
        if env is None:
            model = model_config_from_options(str(target.resolve()), options)
        else:
            location, settings = _service_model(env, str(target), stacks_dir, model_path, bucket)
            model = model_config_from_options(location, options, settings)
        tokens = tokens_from_environment(token_file=options["auth_token_file"])
        config = server_config_from_options(
            ServerConfig(models=(model,), auth_tokens=tokens), options
        )
    except ConfigError as exc:
        raise ServeOptionsError(str(exc)) from None
    try:
        # Only a server that holds the port may be reported ready: fail before starting one.
        listen_socket(config.host, config.port).close()
    except ListenError as exc:
        raise PortUnavailableError(str(exc)) from None
    chosen = image if image is not None else image_for_device(model.device)
    if docker:
        raise typer.Exit(
            _serve_in_docker(
                chosen,
                model,
                config,
                options,
                target if env is None else model_path,
                context,
                sources,
                tuple(pip_packages or ())
                if env is None
                else _service_packages(env, str(target), stacks_dir),
            )
        )
    with tempfile.TemporaryDirectory(prefix="fermion-serve-") as scratch:
        folder = context if context is not None else Path(scratch) / "context"
        rendered = render(chosen, model, folder)
        shown = target if env is None else f"{env}'s {target} from {model.path}"
        out.print(f"fermion serve: {shown} in the {chosen} context {rendered.tag} ...")
        code = _run(rendered.path, config, to_argv(options, scope="server"))
    raise typer.Exit(code)


def _serve_in_docker(
    image: str,
    model: ModelConfig,
    config: ServerConfig,
    options: ServerOptionValues,
    local_model: Path | None,
    context: Path | None,
    sources: BuildSources,
    pip_packages: tuple[str, ...],
) -> int:
    """Serve `model` from its runtime image: the model mounted (or fetched from its URI), the
    port and server options given here; everything else as the image has it."""
    from dataclasses import replace

    from fermion.cli import docker_run
    from fermion.runtime_images.render import MODEL_URI_VARIABLE, render
    from fermion.runtime_images.server.options import to_argv

    source = (
        docker_run.ModelSource(local=local_model.resolve())
        if local_model is not None
        else docker_run.ModelSource(uri=model.path)
    )
    # The image holds the model's settings with its location left to the deployment, as a
    # service's image does; the pod (here: docker run) says where the model is.
    in_image = replace(model, path=f"${{{MODEL_URI_VARIABLE}}}")
    token_file = options["auth_token_file"]
    server_options = {**options, "host": config.host, "port": config.port, "auth_token_file": None}
    with tempfile.TemporaryDirectory(prefix="fermion-serve-") as scratch:
        folder = context if context is not None else Path(scratch) / "context"
        rendered = render(
            image,
            in_image,
            folder,
            pip_packages=pip_packages,
            base=sources.base,
            dockerfile_syntax=sources.dockerfile_syntax,
        )
        built = docker_run.image_for(rendered, sources, Path(scratch))
        argv = docker_run.run_command(
            built,
            source,
            to_argv(server_options, scope="server"),
            token_file=None if token_file is None else Path(token_file),
            port=config.port,
            grace_period_s=config.grace_period_s,
        )
        out.print(f"fermion serve --docker: {built.reference} ({model.name}) ...", soft_wrap=True)
        return _supervise(docker_run.start(argv), config)


def _service_packages(env: str, service: str, stacks_dir: Path | None) -> tuple[str, ...]:
    from fermion.cli.stack_target import check_environment

    spec = check_environment(env, stacks_dir).spec
    found = next((s for s in spec.services if s.name == service), None)
    return () if found is None else tuple(found.pip_packages)


def _service_model(
    env: str, service: str, stacks_dir: Path | None, model_path: Path | None, bucket: str | None
) -> tuple[str, ModelConfig]:
    """Where a service's model is (`model_path`, its model.uri, or its version in the store)
    and its settings as its runtime image has them."""
    from fermion.cli.stack_target import check_environment
    from fermion.runtime_images.render import model_config
    from fermion.stacks.model_store_access import ModelLocation, ServiceNotFoundError, model_bucket

    spec = check_environment(env, stacks_dir).spec
    found = next((s for s in spec.services if s.name == service), None)
    if found is None:
        raise ServiceNotFoundError(env, service, [s.name for s in spec.services])
    if model_path is not None:
        location = str(model_path.resolve())
    elif found.model.uri is not None:
        location = found.model.uri
    else:
        location = ModelLocation(model_bucket(spec, env, bucket), service, found.model.version).uri
    return location, model_config(found)


def _run(folder: Path, config: ServerConfig, server_args: list[str]) -> int:
    command = [sys.executable, "-m", "server", "--config", "serving.json", *server_args]
    # Its own session: a Ctrl-C reaches fermion serve, which passes it on once.
    return _supervise(subprocess.Popen(command, cwd=folder, start_new_session=True), config)


def _supervise(process: subprocess.Popen[bytes], config: ServerConfig) -> int:
    """Pass Ctrl-C and SIGTERM on to the server, announce it once ready, and wait for it."""

    def forward(sig: int, _frame: object) -> None:
        if process.poll() is None:
            process.send_signal(sig)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        host = "localhost" if config.host in ("127.0.0.1", "0.0.0.0", "::") else config.host
        base = f"http://{host}:{config.port}"
        model = config.models[0].name
        token = config.auth_tokens[0] if config.auth_tokens else None
        metadata = _wait_ready(process, base, model, token)
        if metadata is not None:
            _announce(base, model, metadata, auth=token is not None)
        return process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_ready(
    process: subprocess.Popen[bytes], base: str, model: str, token: str | None
) -> dict[str, Any] | None:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    metadata = urllib.request.Request(f"{base}/v2/models/{model}", headers=headers)
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=2) as answer:
                if answer.status == 200:
                    with urllib.request.urlopen(metadata, timeout=5) as meta:
                        document: dict[str, Any] = json.load(meta)
                        return document
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    return None


def _announce(base: str, model: str, metadata: dict[str, Any], auth: bool) -> None:
    out.print(f"[bold green]ready[/]: model [bold]{model}[/] at {base}/v2/models/{model}")
    header = f" {AUTH_HEADER}" if auth else ""
    out.print(f"  metadata: curl -s{header} {base}/v2/models/{model}", soft_wrap=True)
    infer = example_curl(base, model, metadata["inputs"], auth=auth)
    out.print(f"  infer:    {infer}", soft_wrap=True, markup=False)
    if auth:
        out.print(
            f"  token:    requests need a bearer token; set ${TOKEN_VARIABLE} to one of the "
            "server's tokens first",
            markup=False,
        )
    out.print("Press Ctrl-C to stop; requests in flight finish first.")


def example_curl(base: str, model: str, inputs: list[dict[str, Any]], *, auth: bool = False) -> str:
    """A ready-to-paste command that sends one sample to the model; with `auth`, it sends the
    bearer token in $FERMION_TOKEN, so the token itself is never printed."""
    tensors = []
    total = 0
    for spec in inputs:
        shape = [1 if d == -1 else d for d in spec["shape"]] or [1]
        count = 1
        for d in shape:
            count *= d
        total += count
        value: Any = (
            "hello" if spec["datatype"] == "BYTES" else (False if spec["datatype"] == "BOOL" else 0)
        )
        tensors.append(
            {
                "name": spec["name"],
                "shape": shape,
                "datatype": spec["datatype"],
                "count": count,
                "value": value,
            }
        )
    url = f"{base}/v2/models/{model}/infer"
    header = "-H 'Content-Type: application/json'" + (f" {AUTH_HEADER}" if auth else "")
    if total <= _INLINE_ELEMENTS:
        body = {
            "inputs": [
                {
                    "name": t["name"],
                    "shape": t["shape"],
                    "datatype": t["datatype"],
                    "data": [t["value"]] * t["count"],
                }
                for t in tensors
            ]
        }
        return f"curl -s -X POST {url} {header} -d {shlex.quote(json.dumps(body))}"
    parts = ", ".join(
        f'{{"name": {json.dumps(t["name"])}, "shape": {t["shape"]}, '
        f'"datatype": {json.dumps(t["datatype"])}, '
        f'"data": [{json.dumps(t["value"])}] * {t["count"]}}}'
        for t in tensors
    )
    script = f'import json; print(json.dumps({{"inputs": [{parts}]}}))'
    return f"python3 -c {shlex.quote(script)} | curl -s -X POST {url} {header} -d @-"
