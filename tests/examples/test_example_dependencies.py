"""What the examples import is installed by the extra the README names for them."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from ..conftest import REPO

EXAMPLES = REPO / "examples"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements: list[str]) -> set[str]:
    return {_normal(re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0]) for r in requirements}


def _imported_top_levels() -> set[str]:
    found: set[str] = set()
    for path in EXAMPLES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found


def test_every_third_party_import_of_the_examples_is_in_an_extra_the_readme_names() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    provided = _requirement_names(project["dependencies"] + extras["serve"] + extras["examples"])
    distributions = packages_distributions()
    local = {path.stem for path in EXAMPLES.rglob("*.py")}
    missing = []
    for module in sorted(_imported_top_levels()):
        if module in sys.stdlib_module_names or module in local or module == "fermion":
            continue
        names = {_normal(d) for d in distributions.get(module, [module])}
        if not names & provided:
            missing.append(f"{module} (from {', '.join(sorted(names))})")
    assert missing == []
    assert "pip install 'fermion[serve,examples]'" in (EXAMPLES / "README.md").read_text()
    assert "fermion[examples]" in str(extras["dev"])
