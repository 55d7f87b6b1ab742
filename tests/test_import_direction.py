"""Imports run one way through the package, read from every module's source with `ast`.

`cli` → `stacks` → `components` and `policies` → `runtime_images` → `environments`. The serving
runtime (`runtime_images/server/`) is copied into images, so it imports nothing from fermion; it
is a leaf that any layer may import, as are the templates. No two modules import each other,
directly or around a loop, counting imports under TYPE_CHECKING and inside functions too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import REPO

# Lower numbers sit lower: a module may import from its own package or from a lower layer.
LAYERS = {
    "environments": 0,
    "runtime_images": 1,
    "components": 2,
    "policies": 2,
    "stacks": 3,
    "cli": 4,
}
LEAVES = ("fermion.runtime_images.server", "fermion.templates")
SERVER = "fermion.runtime_images.server"
# Commands import what they need when they run, so `fermion --help` starts fast.
LAZY_PACKAGES = ("fermion.cli",)
STARTUP_WORDS = ("start-up", "startup")


@dataclass(frozen=True)
class Edge:
    """One import: `source` imports `target` at `line`."""

    source: str
    target: str
    line: int
    local: bool
    commented: bool

    def __str__(self) -> str:
        return f"{self.source} (line {self.line}) imports {self.target}"


def module_files(repo: Path = REPO) -> dict[str, Path]:
    """Every module of the fermion package, by dotted name."""
    found: dict[str, Path] = {}
    for package in (*LAYERS, "templates"):
        folder = repo / package
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(repo).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(["fermion", *parts])] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _comment_above(lines: list[str], line: int) -> bool:
    window = " ".join(lines[max(0, line - 3) : line]).lower()
    return any(word in window for word in STARTUP_WORDS)


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> Iterator[Edge]:
    """The fermion modules that `module` imports, wherever in the file the import stands."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    lines = source.splitlines()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    local_nodes = {
        id(node)
        for func in ast.walk(tree)
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(func)
    }
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{alias.name}" for alias in node.names] or [base]
        else:
            continue
        for name in names:
            if not name.startswith("fermion"):
                continue
            target = _resolve(name, modules)
            if target is None or target == module:
                continue
            yield Edge(
                module,
                target,
                node.lineno,
                local=id(node) in local_nodes,
                commented=_comment_above(lines, node.lineno),
            )


def all_edges(repo: Path = REPO) -> list[Edge]:
    modules = module_files(repo)
    return [edge for name, path in modules.items() for edge in imports_of(name, path, modules)]


def _package(module: str) -> str:
    return module.split(".")[1]


def _is_leaf(module: str) -> bool:
    return any(module == leaf or module.startswith(leaf + ".") for leaf in LEAVES)


def forbidden(edges: list[Edge]) -> list[str]:
    """Each import that runs against the direction, or out of the server."""
    problems = []
    for edge in edges:
        source, target = edge.source, edge.target
        if _is_leaf(source) and source.startswith(SERVER):
            if not target.startswith(SERVER):
                problems.append(f"{edge}: the server is copied into images alone")
            continue
        if _is_leaf(target) or _package(source) == _package(target):
            continue
        if LAYERS.get(_package(source), 99) <= LAYERS.get(_package(target), 99):
            problems.append(f"{edge}: {_package(source)} may not import {_package(target)}")
    return problems


def unexplained_local_imports(edges: list[Edge]) -> list[str]:
    """Function-local imports outside the CLI, without a comment that says start-up needs them."""
    return [
        f"{edge}: inside a function, with no comment saying start-up needs it"
        for edge in edges
        if edge.local
        and not edge.commented
        and not any(edge.source.startswith(p) for p in LAZY_PACKAGES)
    ]


def cycles(edges: list[Edge]) -> list[list[str]]:
    """The groups of modules that import each other, directly or around a loop (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return all_edges()


def test_the_package_is_read(edges: list[Edge]) -> None:
    sources = {edge.source for edge in edges}
    assert {"fermion.cli.app", "fermion.stacks.program", "fermion.components.platform"} <= sources


def test_imports_run_one_way(edges: list[Edge]) -> None:
    assert forbidden(edges) == []


def test_no_module_imports_itself_around_a_loop(edges: list[Edge]) -> None:
    assert cycles(edges) == []


def test_local_imports_say_why(edges: list[Edge]) -> None:
    assert unexplained_local_imports(edges) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {**dict.fromkeys((f"{p}/__init__.py" for p in LAYERS), ""), **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


class TestTheCheckItself:
    """The checks find what they look for, on small trees made for the purpose."""

    def test_an_upward_import_is_found(self, tmp_path: Path) -> None:
        repo = _tree(
            tmp_path,
            {"environments/spec.py": "from fermion.components.platform import Platform\n"},
        )
        (repo / "components" / "platform.py").write_text("")
        (problem,) = forbidden(all_edges(repo))
        assert "fermion.environments.spec (line 1) imports fermion.components.platform" in problem
        assert "environments may not import components" in problem

    def test_a_type_checking_import_counts(self, tmp_path: Path) -> None:
        repo = _tree(
            tmp_path,
            {
                "runtime_images/render.py": "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from fermion.stacks import plan\n",
                "stacks/plan.py": "",
            },
        )
        assert len(forbidden(all_edges(repo))) == 1

    def test_the_server_may_not_reach_into_fermion(self, tmp_path: Path) -> None:
        repo = _tree(
            tmp_path,
            {
                "runtime_images/server/__init__.py": "",
                "runtime_images/server/app.py": "from .config import X\n"
                "from fermion.environments.errors import FermionError\n",
                "runtime_images/server/config.py": "",
                "environments/errors.py": "",
            },
        )
        (problem,) = forbidden(all_edges(repo))
        assert "server is copied into images alone" in problem

    def test_any_layer_may_import_the_server(self, tmp_path: Path) -> None:
        repo = _tree(
            tmp_path,
            {
                "runtime_images/server/__init__.py": "",
                "runtime_images/server/config.py": "",
                "environments/formats.py": "from fermion.runtime_images.server.config import X\n",
            },
        )
        assert forbidden(all_edges(repo)) == []

    def test_a_loop_is_found(self, tmp_path: Path) -> None:
        repo = _tree(
            tmp_path,
            {
                "stacks/cost.py": "from fermion.stacks.plan import Plan\n",
                "stacks/plan.py": "def f():\n    from fermion.stacks import cost\n",
            },
        )
        found = all_edges(repo)
        assert cycles(found) == [["fermion.stacks.cost", "fermion.stacks.plan"]]
        (problem,) = unexplained_local_imports(found)
        assert "fermion.stacks.plan (line 2)" in problem

    def test_a_commented_local_import_is_allowed(self, tmp_path: Path) -> None:
        repo = _tree(
            tmp_path,
            {
                "stacks/plan.py": "def f():\n    # pulumi_aws takes a second; keep start-up fast.\n"
                "    from fermion.components import platform\n",
                "components/platform.py": "",
            },
        )
        assert unexplained_local_imports(all_edges(repo)) == []
