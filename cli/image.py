"""`fermion image`: the runtime image catalog, build contexts, and local builds."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fermion.cli.console import out, print_json
from fermion.cli.options import StacksDir, stacks_folder
from fermion.environments.errors import FermionError

if TYPE_CHECKING:
    from fermion.runtime_images.render import RenderedContext

app = typer.Typer(
    name="image",
    help="Runtime images: list the catalog, render build contexts, build them with Docker.",
    no_args_is_help=True,
)


class ImageOptionsError(FermionError):
    """Options of `fermion image render` that do not go together."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"{problem}. Use `fermion image render SERVICE --env ENV -o DIR` for a service of an "
            "environment, or `fermion image render --image torch-cpu --model PATH -o DIR` for a "
            "local model"
        )


@app.command("list")
def list_images(
    as_json: Annotated[bool, typer.Option("--json", help="Print the catalog as JSON.")] = False,
) -> None:
    """List the runtime images in the catalog."""
    from fermion.runtime_images.catalog import image_names, load_image

    images = [load_image(name) for name in image_names()]
    if as_json:
        print_json([image.model_dump(mode="json") for image in images])
        return
    for image in images:
        out.print(f"[bold]{image.name}[/]  {image.description}")
        out.print(f"  base   {image.base.reference}", soft_wrap=True)
        out.print(
            f"  python {image.python}, torch {image.torch.version} "
            f"({'CUDA' if image.cuda else 'CPU'}) from {image.torch.index_url}"
        )


Output = Annotated[Path, typer.Option("--output", "-o", help="Folder to write the context into.")]


def _render(
    service: str | None,
    env: str | None,
    stacks_dir: Path | None,
    image: str | None,
    model: Path | None,
    inputs: list[str] | None,
    handler: str | None,
    name: str | None,
    output: Path,
    template_dir: Path | None,
) -> RenderedContext:
    from fermion.runtime_images.render import model_config, render
    from fermion.runtime_images.server.config import ConfigError, model_config_from_options

    if service is not None:
        if env is None:
            raise ImageOptionsError(f"service {service!r} needs --env")
        if model is not None or inputs or handler or name:
            raise ImageOptionsError("--model, --input, --handler and --name go with --image")
        from fermion.environments.stack_files import load_environment

        spec = load_environment(env, stacks_folder(stacks_dir))
        found = next((s for s in spec.services if s.name == service), None)
        if found is None:
            known = ", ".join(s.name for s in spec.services) or "none"
            raise ImageOptionsError(
                f"environment {env!r} has no service {service!r} (it has: {known})"
            )
        return render(
            image or spec.image_for(found),
            model_config(found),
            output,
            template_dir=template_dir,
            pip_packages=tuple(found.pip_packages),
        )
    if image is None or model is None:
        raise ImageOptionsError("give a SERVICE with --env, or both --image and --model")
    try:
        config = model_config_from_options(
            str(model), {"name": name, "inputs": inputs, "handler": handler}
        )
    except ConfigError as exc:
        raise ImageOptionsError(str(exc)) from None
    return render(image, config, output, template_dir=template_dir, bake_model=model)


@app.command("render")
def render_command(
    service: Annotated[
        str | None, typer.Argument(help="A service of the environment given by --env.")
    ] = None,
    output: Output = Path("build/context"),
    env: Annotated[str | None, typer.Option(help="Environment that holds SERVICE.")] = None,
    stacks_dir: StacksDir = None,
    image: Annotated[
        str | None,
        typer.Option(help="Runtime image (torch-cpu, torch-cuda12). Default: by the shape."),
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="A local model file or folder to bake into the image.")
    ] = None,
    inputs: Annotated[
        list[str] | None, typer.Option("--input", help="NAME:DTYPE:SHAPE, with --model.")
    ] = None,
    handler: Annotated[str | None, typer.Option(help="FILE.py:CLASS, with --model.")] = None,
    name: Annotated[str | None, typer.Option(help="Model name, with --model.")] = None,
    template_dir: Annotated[
        Path | None,
        typer.Option(
            help="Your templates; a Dockerfile.j2 there may extend fermion/Dockerfile.j2."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print tag and files as JSON.")] = False,
) -> None:
    """Write a build context (Dockerfile, requirements, serving.json, the server) and its tag."""
    context = _render(
        service, env, stacks_dir, image, model, inputs, handler, name, output, template_dir
    )
    if as_json:
        print_json(
            {
                "image": context.image,
                "tag": context.tag,
                "path": str(context.path),
                "files": list(context.files),
            }
        )
        return
    out.print(f"[bold green]rendered[/] {context.image} context into {context.path}")
    out.print(f"  tag    {context.tag}")
    for file in context.files:
        out.print(f"  {file}")


@app.command("build")
def build_command(
    service: Annotated[
        str | None, typer.Argument(help="A service of the environment given by --env.")
    ] = None,
    env: Annotated[str | None, typer.Option(help="Environment that holds SERVICE.")] = None,
    stacks_dir: StacksDir = None,
    image: Annotated[str | None, typer.Option(help="Runtime image; default by the shape.")] = None,
    model: Annotated[Path | None, typer.Option(help="A local model to bake in.")] = None,
    inputs: Annotated[
        list[str] | None, typer.Option("--input", help="NAME:DTYPE:SHAPE, with --model.")
    ] = None,
    handler: Annotated[str | None, typer.Option(help="FILE.py:CLASS, with --model.")] = None,
    name: Annotated[str | None, typer.Option(help="Model name, with --model.")] = None,
    repository: Annotated[str, typer.Option(help="Image repository to tag.")] = "fermion-local",
    template_dir: Annotated[Path | None, typer.Option(help="Your templates.")] = None,
) -> None:
    """Render a context and build it with Docker's BuildKit, tagged with its content hash."""
    from fermion.cli.docker_build import build_command

    with tempfile.TemporaryDirectory(prefix="fermion-context-") as scratch:
        context = _render(
            service,
            env,
            stacks_dir,
            image,
            model,
            inputs,
            handler,
            name,
            Path(scratch) / "context",
            template_dir,
        )
        reference = f"{repository}:{context.tag}"
        command = build_command(reference, context.path)
        out.print(f"building {reference} from {context.image}: {command}", soft_wrap=True)
        done = subprocess.run(command.argv, env={**os.environ, **command.env}, check=False)
    if done.returncode != 0:
        raise typer.Exit(done.returncode)
    out.print(f"[bold green]built[/] {reference}")
