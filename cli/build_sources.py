"""What an air-gapped or proxied build needs: a base image, pip's sources and a CA bundle.

pip's sources and the CA bundle reach the build as BuildKit secrets, files that exist outside
the build context and only during the pip step, so no layer or image history holds them. A
source that is a folder on this machine (a folder of wheels, a PEP 503 index on disk) is served
read-only on 127.0.0.1 for the length of the build, which runs on the host network.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from fermion.environments.errors import FermionError

_PANEL = "Air-gapped and proxied builds"

Base = Annotated[
    str | None,
    typer.Option(
        "--base",
        help="Base image to build FROM instead of the catalog's pinned one (a copy in your own "
        "registry). Default: $FERMION_BASE_<IMAGE>, else the catalog's.",
        rich_help_panel=_PANEL,
        show_default=False,
    ),
]
IndexUrl = Annotated[
    str | None,
    typer.Option(
        "--index-url",
        help="pip's index in the build, instead of PyPI (a mirror URL, or a PEP 503 folder here).",
        rich_help_panel=_PANEL,
        show_default=False,
    ),
]
ExtraIndexUrl = Annotated[
    list[str] | None,
    typer.Option(
        "--extra-index-url",
        help="Another index for pip in the build (URL or folder); repeatable.",
        rich_help_panel=_PANEL,
        show_default=False,
    ),
]
FindLinks = Annotated[
    list[str] | None,
    typer.Option(
        "--find-links",
        help="A folder of wheels (or a URL of a page of links) for pip in the build; repeatable.",
        rich_help_panel=_PANEL,
        show_default=False,
    ),
]
CaBundle = Annotated[
    Path | None,
    typer.Option(
        "--ca-bundle",
        help="PEM certificates pip trusts in the build besides the public ones (your TLS "
        "proxy's CA).",
        rich_help_panel=_PANEL,
        show_default=False,
    ),
]
DockerfileSyntax = Annotated[
    str | None,
    typer.Option(
        "--dockerfile-syntax",
        help="Add `# syntax=IMAGE` to the Dockerfile (pulls that BuildKit frontend). Default: "
        "none, the engine's built-in frontend.",
        rich_help_panel=_PANEL,
        show_default=False,
    ),
]


class BuildSourceError(FermionError):
    """A package source or CA bundle that the build cannot use."""

    def __init__(self, what: str, value: str, problem: str, fix: str) -> None:
        super().__init__(f"{what} {value}: {problem}. {fix}")


@dataclass(frozen=True)
class BuildSources:
    """The air-gapped options of one build, as given on the command line."""

    base: str | None = None
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    ca_bundle: Path | None = None
    dockerfile_syntax: str | None = None

    @classmethod
    def from_options(
        cls,
        base: str | None,
        index_url: str | None,
        extra_index_urls: list[str] | None,
        find_links: list[str] | None,
        ca_bundle: Path | None,
        dockerfile_syntax: str | None,
    ) -> BuildSources:
        if ca_bundle is not None and not ca_bundle.is_file():
            raise BuildSourceError(
                "--ca-bundle", str(ca_bundle), "is not a file", "Give a PEM file of certificates"
            )
        return cls(
            base,
            index_url,
            tuple(extra_index_urls or ()),
            tuple(find_links or ()),
            ca_bundle,
            dockerfile_syntax,
        )


@dataclass(frozen=True)
class PreparedSecrets:
    """The secrets and build arguments of a build, with files that live as long as the build."""

    secrets: dict[str, Path] = field(default_factory=dict)
    build_args: dict[str, str] = field(default_factory=dict)
    served: tuple[str, ...] = ()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # pip's requests are not the user's business


@contextlib.contextmanager
def _serve_folder(folder: Path) -> Iterator[str]:
    """Serve `folder` read-only on 127.0.0.1, on a free port, until the block ends."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name=f"serve {folder}", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _local_folder(value: str, what: str) -> Path | None:
    """The folder that a source names (a path or a file:// URL), or None for a remote URL."""
    parsed = urllib.parse.urlparse(value)
    if parsed.scheme in ("http", "https"):
        return None
    path = Path(urllib.request.url2pathname(parsed.path)) if parsed.scheme == "file" else None
    if path is None:
        path = Path(value).expanduser()
    if not path.is_dir():
        raise BuildSourceError(
            what,
            value,
            "is neither an http(s) URL nor a folder here",
            "Give the URL of your mirror, or a folder of wheels or of a PEP 503 index",
        )
    return path.resolve()


@contextlib.contextmanager
def prepared(sources: BuildSources, image: str, scratch: Path) -> Iterator[PreparedSecrets]:
    """Serve local folders and write the secret files into `scratch` (outside the context) for
    the length of the block."""
    # Here, not at the top: the catalog brings pydantic, which `fermion --help` does without.
    from fermion.runtime_images.catalog import load_image
    from fermion.runtime_images.render import (
        CA_BUNDLE_SECRET,
        PIP_CONFIG_SECRET,
        PipSources,
        ca_bundle_secret,
    )

    spec = load_image(image)
    with contextlib.ExitStack() as stack:
        served: list[str] = []

        def url_of(value: str, what: str, *, index: bool) -> str:
            folder = _local_folder(value, what)
            if folder is None:
                return value
            # An index on disk links its files relatively, often from a sibling folder
            # (simple/ beside files/), so its parent is served and the index is a path in it.
            root = folder.parent if index else folder
            base = stack.enter_context(_serve_folder(root))
            served.append(f"{folder} at {base}")
            return f"{base}/{urllib.parse.quote(folder.name)}/" if index else f"{base}/"

        pip = PipSources(
            None
            if sources.index_url is None
            else url_of(sources.index_url, "--index-url", index=True),
            tuple(url_of(u, "--extra-index-url", index=True) for u in sources.extra_index_urls),
            tuple(url_of(u, "--find-links", index=False) for u in sources.find_links),
        )
        secrets: dict[str, Path] = {}
        scratch.mkdir(parents=True, exist_ok=True)
        if sources.ca_bundle is not None:
            bundle = scratch / CA_BUNDLE_SECRET
            bundle.touch(mode=0o600)
            bundle.write_bytes(ca_bundle_secret(sources.ca_bundle.read_bytes()))
            secrets[CA_BUNDLE_SECRET] = bundle
        if pip.names_sources or sources.ca_bundle is not None:
            config = scratch / PIP_CONFIG_SECRET
            config.touch(mode=0o600)
            config.write_text(pip.pip_config(ca_bundle=sources.ca_bundle is not None))
            secrets[PIP_CONFIG_SECRET] = config
        yield PreparedSecrets(secrets, pip.build_args(spec), tuple(served))


__all__ = ["BuildSourceError", "BuildSources", "PreparedSecrets", "prepared"]
