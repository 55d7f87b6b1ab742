"""Rendering a runtime image's build context: Dockerfile, requirements, serving config, server.

The same inputs give the same bytes, file for file, and the SHA-256 over the context is the
image tag: the tag changes exactly when something the image holds changes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

import fermion.templates
from fermion.environments.errors import FermionError
from fermion.runtime_images.catalog import ImageSpec, base_override, load_image
from fermion.runtime_images.server.config import (
    DEFAULT_GRACE_PERIOD_S,
    ModelConfig,
    parse_tensor_spec,
)

if TYPE_CHECKING:
    from fermion.environments.sections import ServiceSpec

SERVER_DIR = Path(__file__).with_name("server")
TEMPLATE_DIR = Path(fermion.templates.__file__).parent
MODEL_URI_VARIABLE = "FERMION_MODEL_URI"
TAG_LENGTH = 16
# BuildKit secrets the Dockerfile mounts while pip installs: pip's sources (a pip.conf) and a CA
# bundle. They are read during that one step and land in no layer of the image.
PIP_CONFIG_SECRET = "pip-config"
CA_BUNDLE_SECRET = "pip-ca-bundle"
# The build argument that holds the catalog's torch index; empty when the build names its own
# package sources, so that pip looks nowhere else (an air-gapped build cannot reach it).
TORCH_INDEX_ARG = "FERMION_TORCH_INDEX_URL"


class OutputFolderError(FermionError):
    """An output folder that rendering would have to overwrite."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path} {problem}; pick another --output folder, or empty this one")


class TemplateError(FermionError):
    """A template that fails to render: a missing variable, a syntax error, a missing file."""

    def __init__(self, template: str, problem: str) -> None:
        super().__init__(
            f"template {template}: {problem}. Fix the template (variables: image, base, model, "
            "server, baked_model, pip_packages, dockerfile_syntax, secrets, torch_index_arg)"
        )


class TemplateFolderError(FermionError):
    """A template folder that is missing, or holds a file that would replace one fermion
    renders."""

    def __init__(self, folder: Path, problem: str) -> None:
        super().__init__(f"template folder {folder}: {problem}")


@dataclass(frozen=True)
class BaseReference:
    """The image a Dockerfile starts FROM: the catalog's pinned base, or an override."""

    reference: str
    name: str
    digest: str | None

    @classmethod
    def parse(cls, reference: str) -> BaseReference:
        name, _, digest = reference.partition("@")
        if not name or any(c.isspace() for c in reference):
            raise BaseImageError(reference)
        return cls(reference, name, digest or None)


class BaseImageError(FermionError):
    """A base image reference that a Dockerfile cannot start FROM."""

    def __init__(self, reference: str) -> None:
        super().__init__(
            f"base image {reference!r} is not an image reference; give NAME[:TAG][@sha256:...], "
            "such as registry.example.com/python:3.11-slim-bookworm"
        )


@dataclass(frozen=True)
class PipSources:
    """Where pip finds packages during a build, and the CA bundle it trusts there.

    Given any index, extra index or find-links, pip uses exactly those (and PyPI only where no
    index_url replaces it) instead of the catalog's torch index. The build receives them as the
    BuildKit secret `pip-config`, a pip.conf, so that no layer and no image history holds them:
    mirror URLs often carry credentials. The URLs must be reachable from the build.
    """

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()

    @property
    def names_sources(self) -> bool:
        return self.index_url is not None or bool(self.extra_index_urls or self.find_links)

    def pip_config(self, *, ca_bundle: bool) -> str:
        """The pip.conf the build's pip reads; with `ca_bundle`, it trusts the mounted bundle."""
        lines = ["[global]"]
        if self.index_url is not None:
            lines.append(f"index-url = {self.index_url}")
        if self.extra_index_urls:
            lines.append(f"extra-index-url = {' '.join(self.extra_index_urls)}")
        if self.find_links:
            lines.append(f"find-links = {' '.join(self.find_links)}")
        if ca_bundle:
            lines.append(f"cert = /run/secrets/{CA_BUNDLE_SECRET}")
        return "\n".join(lines) + "\n"

    def build_args(self, image: ImageSpec) -> dict[str, str]:
        """Build arguments: the catalog's torch index, unless these sources replace it."""
        return {TORCH_INDEX_ARG: "" if self.names_sources else image.torch.index_url}


def ca_bundle_secret(extra: bytes) -> bytes:
    """The CA bundle a build's pip trusts: the public roots (certifi's, which pip trusts by
    default) and `extra` (a TLS proxy's CA, say), since pip's `cert` replaces its list."""
    try:
        import certifi
    except ImportError:  # pip itself vendors certifi; without it, only `extra` is trusted
        return extra
    return Path(certifi.where()).read_bytes() + b"\n" + extra


@dataclass(frozen=True)
class RenderedContext:
    """A build context on disk, its tag, and the files it holds (relative, sorted)."""

    path: Path
    tag: str
    files: tuple[str, ...]
    image: str


@functools.cache
def _environment(template_dir: Path | None) -> jinja2.Environment:
    # One environment per folder keeps compiled templates between renders (a plan renders one
    # context per service); Jinja still reloads a template whose file changed.
    ours = jinja2.FileSystemLoader(str(TEMPLATE_DIR))
    loaders: list[jinja2.BaseLoader] = []
    if template_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(template_dir)))
    # A user template reaches fermion's own as "fermion/<name>" to extend it.
    loaders += [jinja2.PrefixLoader({"fermion": ours}), ours]
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Dockerfiles and requirements, not HTML
    )


def _render_template(env: jinja2.Environment, name: str, variables: Mapping[str, Any]) -> str:
    try:
        return env.get_template(name).render(**variables)
    except jinja2.UndefinedError as exc:
        raise TemplateError(name, f"undefined variable ({exc.message})") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"{exc.name or name}:{exc.lineno}", exc.message or "syntax error"
        ) from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(name, f"not found ({exc.message})") from None


def model_config(service: ServiceSpec) -> ModelConfig:
    """The serving runtime's settings for a service of an environment.

    Without an explicit `model.uri`, the model's location is left to the deployment, which sets
    ${FERMION_MODEL_URI} to s3://<models bucket>/<service>/<version>/: the image does not change
    when only the bucket does.
    """
    return ModelConfig(
        name=service.name,
        path=service.model.uri if service.model.uri is not None else f"${{{MODEL_URI_VARIABLE}}}",
        version=service.model.version,
        format=service.model.format,
        handler=service.model.handler,
        inputs=tuple(parse_tensor_spec(text) for text in service.inputs),
        max_batch_size=service.batching.max_batch_size,
        max_delay_ms=service.batching.max_delay_ms,
        timeout_s=service.timeout_s,
        precision=service.precision,
    )


def serving_config(image: ImageSpec, model: ModelConfig, grace_period_s: float) -> dict[str, Any]:
    """The serving.json the image's server reads."""
    model_fields = asdict(model)
    model_fields["inputs"] = [str(spec) for spec in model.inputs]
    model_fields = {k: v for k, v in model_fields.items() if v is not None}
    return {
        "host": "0.0.0.0",  # a pod's server listens on the pod's address
        "port": image.port,
        "grace_period_s": grace_period_s,
        "models": [model_fields],
    }


def render(
    image: ImageSpec | str,
    model: ModelConfig,
    out_dir: Path,
    *,
    template_dir: Path | None = None,
    bake_model: Path | None = None,
    grace_period_s: float = DEFAULT_GRACE_PERIOD_S,
    pip_packages: tuple[str, ...] = (),
    base: str | None = None,
    dockerfile_syntax: str | None = None,
) -> RenderedContext:
    """Write the build context for serving `model` on `image` into `out_dir` (emptied first).

    With `bake_model`, that file or folder is copied into the image and served from there;
    otherwise the server fetches `model.path` (an s3:// URI, or ${FERMION_MODEL_URI}) at start.
    `pip_packages` are what a handler needs beyond the runtime (a tokenizer library, say).
    Templates in `template_dir` override or extend fermion's own; every other file there (a CA
    certificate that a Dockerfile.j2 COPYs, say) is copied into the context as it is, at the
    same path, and counts in the tag.

    `base` replaces the catalog's pinned base image (a copy in your own registry, say); without
    it, $FERMION_BASE_<IMAGE> does (FERMION_BASE_TORCH_CPU for torch-cpu), else the catalog's.
    `dockerfile_syntax` adds a `# syntax=` line, which makes BuildKit pull that frontend image;
    without it the engine's built-in frontend builds the Dockerfile, with no registry needed.
    """
    spec = load_image(image) if isinstance(image, str) else image
    chosen_base = base if base is not None else base_override(spec.name)
    base_ref = (
        BaseReference.parse(chosen_base)
        if chosen_base is not None
        else BaseReference(
            spec.base.reference, f"{spec.base.image}:{spec.base.tag}", spec.base.digest
        )
    )
    if bake_model is not None:
        if not bake_model.exists():
            raise TemplateError("model", f"{bake_model} does not exist")
        target = "/srv/fermion/model" + (f"/{bake_model.name}" if bake_model.is_file() else "")
        model = replace(model, path=target)
    if template_dir is not None and not template_dir.is_dir():
        raise TemplateFolderError(
            template_dir, "is not a folder; give the folder that holds your templates"
        )
    env = _environment(template_dir)
    variables = {
        "image": spec,
        "model": model,
        "baked_model": bake_model is not None,
        "server": {"grace_period_s": grace_period_s},
        "pip_packages": (*spec.pip_packages, *pip_packages),
        "base": base_ref,
        "dockerfile_syntax": dockerfile_syntax,
        "secrets": {"pip_config": PIP_CONFIG_SECRET, "ca_bundle": CA_BUNDLE_SECRET},
        "torch_index_arg": TORCH_INDEX_ARG,
    }
    files: dict[str, bytes] = {
        "Dockerfile": _render_template(env, "Dockerfile.j2", variables).encode(),
        "requirements.txt": _render_template(env, "requirements.txt.j2", variables).encode(),
        "serving.json": (
            json.dumps(serving_config(spec, model, grace_period_s), indent=2, sort_keys=True) + "\n"
        ).encode(),
    }
    for source in sorted(SERVER_DIR.glob("*.py")):
        files[f"server/{source.name}"] = source.read_bytes()
    if bake_model is not None:
        sources = [bake_model] if bake_model.is_file() else sorted(bake_model.rglob("*"))
        root = bake_model.parent if bake_model.is_file() else bake_model
        for source in sources:
            if source.is_file() and "__pycache__" not in source.parts:
                files[f"model/{source.relative_to(root).as_posix()}"] = source.read_bytes()
    if template_dir is not None:
        for name, data in _template_folder_files(template_dir).items():
            if name in files:
                raise TemplateFolderError(
                    template_dir,
                    f"{name} would replace the {name} that fermion renders; rename it (every "
                    "file there but the *.j2 templates is copied into the build context)",
                )
            files[name] = data
    return _write(out_dir, files, spec.name)


def _template_folder_files(folder: Path) -> dict[str, bytes]:
    """Every file of a template folder that is not a template, by its path in the folder."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.suffix != ".j2" and "__pycache__" not in path.parts
    }


def context_tag(files: Mapping[str, bytes]) -> str:
    """The SHA-256 over every file's path and bytes, in path order: the image tag."""
    digest = hashlib.sha256()
    for name in sorted(files):
        data = files[name]
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:TAG_LENGTH]


def _write(out_dir: Path, files: Mapping[str, bytes], image: str) -> RenderedContext:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise OutputFolderError(out_dir, "exists and is not a folder")
        if any(out_dir.iterdir()) and not (out_dir / "serving.json").is_file():
            # Refuse to empty a folder that is not a rendered context: nothing stored is lost.
            raise OutputFolderError(out_dir, "is not empty and holds no rendered context")
        shutil.rmtree(out_dir)
    for name, data in files.items():
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o644)
    return RenderedContext(out_dir, context_tag(files), tuple(sorted(files)), image)
