"""RuntimeImage: a service's runtime image, rendered, built and pushed to ECR by Pulumi."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

from fermion.runtime_images.catalog import load_image
from fermion.runtime_images.render import (
    CA_BUNDLE_SECRET,
    PIP_CONFIG_SECRET,
    PipSources,
    ca_bundle_secret,
    render,
)
from fermion.runtime_images.server.config import ModelConfig

# Relative to the program's working folder: Pulumi runs the program from the project.
DEFAULT_CONTEXT_DIR = Path(".fermion/contexts")


@dataclass(frozen=True)
class RuntimeImageArgs:
    """What to build and where to push it.

    `repository_url` is the ECR repository (`<account>.dkr.ecr.<region>.amazonaws.com/<name>`);
    `registry_id`, its account, picks the credentials. The build context is rendered into
    `context_dir`, which must be a folder this program may rewrite.

    For a builder behind a proxy or with no internet: `base` replaces the catalog's base image
    (else $FERMION_BASE_<IMAGE>); `pip_sources` names the package mirror or wheel pages pip
    uses instead of PyPI and the torch index; `ca_bundle_pem` adds certificates (PEM text) that
    pip trusts. Both reach the build as BuildKit secrets, never a layer or build argument.
    `dockerfile_syntax` adds a `# syntax=` line (the default is the builder's own frontend).
    """

    image: str
    model: ModelConfig
    repository_url: pulumi.Input[str]
    registry_id: pulumi.Input[str] | None = None
    context_dir: Path = DEFAULT_CONTEXT_DIR
    pip_packages: tuple[str, ...] = ()
    template_dir: Path | None = None
    platform: str = "linux/amd64"
    push: bool = True
    extra_tags: tuple[str, ...] = field(default_factory=tuple)
    base: str | None = None
    pip_sources: PipSources | None = None
    ca_bundle_pem: str | None = None
    dockerfile_syntax: str | None = None


class RuntimeImage(pulumi.ComponentResource):
    """Renders a service's build context and builds it with BuildKit (pulumi-docker-build).

    The tag is the context's content hash, so `pulumi up` rebuilds exactly when what the image
    holds changes. Outputs: `tag`, `image_ref` (repository@digest, what pods should run) and
    `context_path`. The build cache lives in the same repository under the `buildcache` tag.
    """

    tag: str
    context_path: str
    image_ref: pulumi.Output[str]

    def __init__(
        self, name: str, args: RuntimeImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fermion:index:RuntimeImage", name, None, opts)
        # Rendering writes files: docker-build needs a context on disk, and the hash of those
        # files is the tag. Everything else here goes through Pulumi.
        context = render(
            args.image,
            args.model,
            args.context_dir / name,
            template_dir=args.template_dir,
            pip_packages=args.pip_packages,
            base=args.base,
            dockerfile_syntax=args.dockerfile_syntax,
        )
        sources = args.pip_sources if args.pip_sources is not None else PipSources()
        secrets: dict[str, pulumi.Input[str]] = {}
        if sources.names_sources or args.ca_bundle_pem is not None:
            config = sources.pip_config(ca_bundle=args.ca_bundle_pem is not None)
            secrets[PIP_CONFIG_SECRET] = pulumi.Output.secret(config)
        if args.ca_bundle_pem is not None:
            bundle = ca_bundle_secret(args.ca_bundle_pem.encode()).decode()
            secrets[CA_BUNDLE_SECRET] = pulumi.Output.secret(bundle)
        self.tag = context.tag
        self.context_path = str(context.path)
        repository = pulumi.Output.from_input(args.repository_url)
        token = aws.ecr.get_authorization_token_output(
            registry_id=args.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        tags = [_tagged(repository, t) for t in (context.tag, *args.extra_tags)]
        cache = repository.apply(lambda url: f"{url}:buildcache")
        self.image = docker_build.Image(
            name,
            context=docker_build.BuildContextArgs(location=self.context_path),
            dockerfile=docker_build.DockerfileArgs(location=str(context.path / "Dockerfile")),
            platforms=[docker_build.Platform(args.platform)],
            build_args=sources.build_args(load_image(args.image)),
            secrets=secrets or None,
            tags=tags,
            push=args.push,
            # A preview shows the tag that would change; building CUDA images waits for `up`.
            build_on_preview=False,
            registries=[
                docker_build.RegistryArgs(
                    address=repository.apply(lambda url: url.split("/", 1)[0]),
                    username=token.user_name,
                    password=token.password,
                )
            ],
            cache_from=[
                docker_build.CacheFromArgs(registry=docker_build.CacheFromRegistryArgs(ref=cache))
            ],
            cache_to=[
                docker_build.CacheToArgs(
                    registry=docker_build.CacheToRegistryArgs(
                        ref=cache,
                        mode=docker_build.CacheMode.MAX,
                        image_manifest=True,
                        oci_media_types=True,
                    )
                )
            ],
            labels={"dev.fermion.context-tag": context.tag, "dev.fermion.image": args.image},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.image_ref = pulumi.Output.all(repository, self.image.digest).apply(
            lambda parts: f"{parts[0]}@{parts[1]}"
        )
        self.register_outputs(
            {"tag": self.tag, "image_ref": self.image_ref, "context_path": self.context_path}
        )


def _tagged(repository: pulumi.Output[str], tag: str) -> pulumi.Output[str]:
    return repository.apply(lambda url: f"{url}:{tag}")
