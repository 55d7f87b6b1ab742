"""Every `--flag` that fermion's messages, help and README name exists on the command they are
about: `fermion <command>` text on that command, `python -m server` text on the server's
entrypoint, and a bare flag on some fermion command or the entrypoint."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import typer

from fermion.cli import app
from fermion.runtime_images.server.__main__ import build_parser
from fermion.runtime_images.server.node_cache import build_parser as build_cache_parser

from ..conftest import REPO

PACKAGES = ("cli", "components", "environments", "runtime_images", "stacks")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]")
SPAN = re.compile(r"`([^`]+)`")
# Text about another program, or a Dockerfile's RUN line, names that program's flags.
OTHER_PROGRAMS = frozenset(
    {"RUN", "apt-get", "aws", "curl", "docker", "git", "hadolint", "kubectl", "make", "mypy"}
    | {"pip", "pulumi", "pytest", "ruff"}
)
# `fermion serve` renders the serving.json that this flag of the entrypoint reads.
ENTRYPOINT_ONLY = frozenset({"--config"})


@cache
def command_flags() -> dict[tuple[str, ...], frozenset[str]]:
    """Each fermion command's path (() for the root) and its flags, read from the click tree."""
    found: dict[tuple[str, ...], frozenset[str]] = {}

    def walk(command: Any, path: tuple[str, ...]) -> None:
        flags = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        found[path] = frozenset({f for f in flags if f.startswith("--")} | {"--help"})
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return found


@cache
def server_flags() -> frozenset[str]:
    parser = build_parser()
    return frozenset(s for a in parser._actions for s in a.option_strings if s.startswith("--"))


@cache
def cache_flags() -> frozenset[str]:
    """What the node's model cache (`python -m server.node_cache`) takes."""
    parser = build_cache_parser()
    return frozenset(s for a in parser._actions for s in a.option_strings if s.startswith("--"))


def any_flag() -> frozenset[str]:
    return frozenset().union(server_flags(), *command_flags().values())


def serving_flags() -> frozenset[str]:
    """What both front ends of the serving runtime take: `fermion serve` and the entrypoint."""
    return (server_flags() & command_flags()[("serve",)]) | ENTRYPOINT_ONLY


def flags_of(command_line: str) -> frozenset[str] | None:
    """The flags that the command a text span starts with takes; None for another program's."""
    words = command_line.split()
    if words and words[0].endswith("/fermion"):
        words[0] = "fermion"
    if not words:
        return any_flag()
    if words[0] == "fermion":
        path: tuple[str, ...] = ()
        for word in words[1:]:
            if word == "{}":
                return any_flag()  # a command that the message fills in
            if (*path, word) not in command_flags():
                break
            path = (*path, word)
        return command_flags()[path]
    if words[0].startswith("python") and "server.node_cache" in words[1:4]:
        return cache_flags()
    if words[0].startswith("python") and "server" in words[1:4]:
        return server_flags()
    if words[0] in OTHER_PROGRAMS or words[0].startswith(("python", ".venv/")):
        return None
    return any_flag()


def unknown_flags(text: str, context: frozenset[str] | None = None) -> Iterator[str]:
    """Flags in `text` that its commands lack: those in a `fermion ...` span against that
    command, the rest against `context` (every fermion command's and the server's by default)."""
    rest = text
    for span in SPAN.findall(text):
        rest = rest.replace(f"`{span}`", " ")
        known = flags_of(span) if FLAG.match(span) is None else context or any_flag()
        if known is not None:
            yield from (flag for flag in FLAG.findall(span) if flag not in known)
    known_rest = context or any_flag()
    yield from (flag for flag in FLAG.findall(rest) if flag not in known_rest)


def _literals(path: Path) -> Iterator[tuple[int, str]]:
    """Every string literal, an f-string whole with {} for each value."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    fstrings = [node for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)]
    parts_of_fstrings = {id(part) for node in fstrings for part in node.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in parts_of_fstrings:
                yield node.lineno, node.value
        elif isinstance(node, ast.JoinedStr):
            parts = [v.value if isinstance(v, ast.Constant) else "{}" for v in node.values]
            yield node.lineno, "".join(str(p) for p in parts)


def test_every_flag_that_a_message_names_exists() -> None:
    wrong = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            # The runtime's own messages reach users of either of its front ends.
            serving = path.is_relative_to(REPO / "runtime_images" / "server")
            for line, text in _literals(path):
                if not re.search(r"\s", text):
                    continue  # an argument of a command line, not prose
                context = serving_flags() if serving else None
                if path.name == "node_cache.py":
                    context = cache_flags()  # a program of its own in the same image
                found = unknown_flags(text, context)
                wrong += [f"{path.relative_to(REPO)}:{line}: {flag}" for flag in found]
    assert not wrong, "flags that no command has:\n" + "\n".join(wrong)


def test_every_flag_that_the_readme_names_exists() -> None:
    wrong = []
    in_code = False
    section = ""
    for number, line in enumerate((REPO / "README.md").read_text().splitlines(), 1):
        if line.startswith("## "):
            section = line.removeprefix("## ")
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            code = line.split("#")[0].strip()
            known = flags_of(code)
            found = [] if known is None else [f for f in FLAG.findall(code) if f not in known]
        elif line.startswith("| `fermion"):
            # A row of the command table: its flags belong to the command in its first cell.
            command = SPAN.findall(line)[0]
            found = list(unknown_flags(line, context=flags_of(command)))
        elif section == "Serving models":
            # What the runtime takes, `fermion serve` takes: that is how the README runs it.
            found = list(unknown_flags(line, context=command_flags()[("serve",)]))
        else:
            found = list(unknown_flags(line))
        wrong += [f"README.md:{number}: {flag}" for flag in found]
    assert not wrong, "flags that no command has:\n" + "\n".join(wrong)


def test_the_check_catches_a_flag_that_no_command_has() -> None:
    assert list(unknown_flags("raise --max-request-bytes")) == []
    assert list(unknown_flags("raise --max-body-bytes")) == ["--max-body-bytes"]
    assert list(unknown_flags("`fermion plan ENV --gpu a100`")) == ["--gpu"]
    assert list(unknown_flags("`fermion shapes --gpu a100`")) == []
    assert list(unknown_flags("`python -m server --json`")) == ["--json"]
    assert list(unknown_flags("`docker buildx build --load DIR`")) == []
    assert list(unknown_flags("`fermion {} ENV --json`")) == []
    assert "--auth-token-file" in serving_flags() and "--json" not in serving_flags()
