"""`fermion image`: the runtime image catalog, build contexts, and local builds."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
PipPackages = Annotated[
    list[str] | None,
    typer.Option(
        "--pip-package",
        help="A requirement the model needs beyond the runtime (transformers==5.24.0), with "
        "--model; repeatable.",
        show_default=False,
    ),
]


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
    *,
    pip_packages: list[str] | None = None,
    base: str | None = None,
    dockerfile_syntax: str | None = None,
) -> RenderedContext:
    from fermion.runtime_images.render import model_config, render
    from fermion.runtime_images.server.config import ConfigError, model_config_from_options

    if service is not None:
        if env is None:
            raise ImageOptionsError(f"service {service!r} needs --env")
        if model is not None or inputs or handler or name or pip_packages:
            raise ImageOptionsError(
                "--model, --input, --handler, --name and --pip-package go with --image"
            )
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
            base=base,
            dockerfile_syntax=dockerfile_syntax,
        )
    if image is None or model is None:
        raise ImageOptionsError("give a SERVICE with --env, or both --image and --model")
    try:
        config = model_config_from_options(
            str(model), {"name": name, "inputs": inputs, "handler": handler}
        )
    except ConfigError as exc:
        raise ImageOptionsError(str(exc)) from None
    return render(
        image,
        config,
        output,
        template_dir=template_dir,
        bake_model=model,
        pip_packages=tuple(pip_packages or ()),
        base=base,
        dockerfile_syntax=dockerfile_syntax,
    )


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
    pip_packages: PipPackages = None,
    base: Base = None,
    dockerfile_syntax: DockerfileSyntax = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print tag and files as JSON.")] = False,
) -> None:
    """Write a build context (Dockerfile, requirements, serving.json, the server) and its tag."""
    context = _render(
        service,
        env,
        stacks_dir,
        image,
        model,
        inputs,
        handler,
        name,
        output,
        template_dir,
        pip_packages=pip_packages,
        base=base,
        dockerfile_syntax=dockerfile_syntax,
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
    pip_packages: PipPackages = None,
    repository: Annotated[str, typer.Option(help="Image repository to tag.")] = "fermion-local",
    template_dir: Annotated[Path | None, typer.Option(help="Your templates.")] = None,
    push: Annotated[
        str | None,
        typer.Option(
            "--push",
            help="Push to this repository (registry.example.com/team/name) and print the digest.",
            show_default=False,
        ),
    ] = None,
    base: Base = None,
    index_url: IndexUrl = None,
    extra_index_urls: ExtraIndexUrl = None,
    find_links: FindLinks = None,
    ca_bundle: CaBundle = None,
    dockerfile_syntax: DockerfileSyntax = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print reference, tag, id, size, build seconds (and digest) as JSON.",
        ),
    ] = False,
) -> None:
    """Render a context and build it with Docker's BuildKit, tagged with its content hash.

    Behind a proxy or with no internet, name your own base image, package sources and CA
    bundle: they reach the build as BuildKit secrets, never a layer. See docs/images.md.
    """
    from fermion.cli import docker_image

    sources = BuildSources.from_options(
        base, index_url, extra_index_urls, find_links, ca_bundle, dockerfile_syntax
    )
    with tempfile.TemporaryDirectory(prefix="fermion-build-") as scratch:
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
            pip_packages=pip_packages,
            base=sources.base,
            dockerfile_syntax=sources.dockerfile_syntax,
        )
        built = docker_image.build(context, repository, sources, Path(scratch))
    pushed = docker_image.push(built, push) if push is not None else None
    if as_json:
        result: dict[str, object] = {
            "reference": built.reference,
            "tag": built.tag,
            "image_id": built.image_id,
            "size_bytes": built.size_bytes,
            "build_seconds": round(built.build_seconds, 2),
        }
        if pushed is not None:
            result["pushed"] = pushed.reference
            result["digest_reference"] = pushed.digest_reference
        print_json(result)
        return
    size = built.size_bytes / 1e6
    out.print(
        f"[bold green]built[/] {built.reference}  {size:,.0f} MB in {built.build_seconds:.1f} s",
        soft_wrap=True,
    )
    if pushed is not None:
        out.print(f"[bold green]pushed[/] {pushed.reference}", soft_wrap=True)
        out.print(pushed.digest_reference, soft_wrap=True, markup=False)
