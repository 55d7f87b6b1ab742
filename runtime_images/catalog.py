"""The runtime image catalog: one YAML file per image in `images/`, read into a typed record."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fermion.environments.errors import FermionError

CATALOG_DIR = Path(__file__).with_name("images")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class ImageCatalogError(FermionError):
    """An image file that is missing, unreadable or malformed."""

    def __init__(self, source: str, problem: str, fix: str) -> None:
        self.source = source
        super().__init__(f"{source}: {problem}. {fix}")


class UnknownImageError(FermionError):
    """An image name that the catalog does not hold."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        super().__init__(
            f"unknown runtime image {name!r}; the catalog holds {', '.join(known)} ({CATALOG_DIR})"
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseImage(_Strict):
    """The image a runtime image starts from, pinned by tag and digest."""

    image: str = Field(min_length=1)
    tag: str = Field(min_length=1)
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")

    @property
    def reference(self) -> str:
        return f"{self.image}:{self.tag}@{self.digest}"


class TorchBuild(_Strict):
    """Which torch, from which wheel index (CPU or a CUDA build)."""

    version: str = Field(pattern=r"^\d+\.\d+(\.\d+)?$")
    index_url: str = Field(pattern=r"^https://")


class ImageSpec(_Strict):
    """One runtime image of the catalog. `cuda` declares whether it runs torch on CUDA."""

    name: str
    description: str
    base: BaseImage
    cuda: bool
    python: str = Field(pattern=r"^3\.\d+$")
    python_executable: str = Field(pattern=r"^/")
    torch: TorchBuild
    pip_packages: tuple[str, ...] = ()
    apt_packages: tuple[str, ...] = ()
    user: str = Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    uid: int = Field(ge=1000, le=65535)
    port: int = Field(ge=1024, le=65535)

    @property
    def needs_apt_python(self) -> bool:
        """The base has no CPython of its own; it comes from the distribution's packages."""
        return "python3" in self.apt_packages


def base_variable(name: str) -> str:
    """The environment variable that overrides an image's base: FERMION_BASE_TORCH_CPU."""
    return "FERMION_BASE_" + name.upper().replace("-", "_")


def base_override(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The base image that $FERMION_BASE_<IMAGE> puts in place of the catalog's, if any: an
    air-gapped site points every build of that image at its own registry's copy."""
    value = (os.environ if environ is None else environ).get(base_variable(name), "").strip()
    return value or None


def image_names(catalog_dir: Path = CATALOG_DIR) -> list[str]:
    return sorted(p.stem for p in catalog_dir.glob("*.yaml"))


def load_image(name: str, catalog_dir: Path = CATALOG_DIR) -> ImageSpec:
    """The catalog entry called `name`; a clear error for an unknown name or a bad file."""
    if not _NAME.match(name) or not (catalog_dir / f"{name}.yaml").is_file():
        raise UnknownImageError(name, image_names(catalog_dir))
    path = catalog_dir / f"{name}.yaml"
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ImageCatalogError(str(path), f"cannot be read ({exc})", "Fix the file") from None
    if not isinstance(data, dict):
        raise ImageCatalogError(str(path), "is not a mapping", "Write the image as YAML keys")
    try:
        return ImageSpec.model_validate({**data, "name": name})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        allowed = ", ".join(ImageSpec.model_fields) if first["type"] == "extra_forbidden" else ""
        fix = f"Allowed keys: {allowed}" if allowed else "Fix that key"
        raise ImageCatalogError(str(path), f"{where}: {first['msg']}", fix) from None
