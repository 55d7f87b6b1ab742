"""Where each key of a YAML document stands: its line, and the keys given twice.

YAML loaders drop what a stack file says about lines, and resolve a key given twice in one
mapping by silently keeping the last. This reads the document's node tree once for both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import yaml

from fermion.environments.errors import SpecProblem


@dataclass(frozen=True)
class RepeatedKey:
    """A key given twice in one mapping: its path, and the lines of both."""

    path: str
    key: str
    first_line: int
    line: int


@dataclass(frozen=True)
class KeyIndex:
    """Every key path of a document (`config.fermion:environment.services[0].name`) with its
    line (1-based), and the keys given twice."""

    lines: dict[str, int] = field(default_factory=dict)
    repeated: list[RepeatedKey] = field(default_factory=list)

    def under(self, prefix: str) -> dict[str, int]:
        """The lines of the paths below `prefix`, with the prefix taken off."""
        head = f"{prefix}."
        return {p.removeprefix(head): n for p, n in self.lines.items() if p.startswith(head)}


def index_keys(text: str) -> KeyIndex:
    """Index the keys of a YAML document; an empty index when it is not valid YAML."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return KeyIndex()
    index = KeyIndex()
    if root is not None:
        _walk(root, "", index)
    return index


def _walk(node: yaml.Node, path: str, index: KeyIndex) -> None:
    if path:
        index.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                continue
            child = f"{path}.{k.value}" if path else str(k.value)
            line = k.start_mark.line + 1
            if k.value in seen:
                index.repeated.append(RepeatedKey(child, str(k.value), seen[k.value], line))
            else:
                seen[k.value] = line
            index.lines.setdefault(child, line)
            _walk(v, child, index)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, f"{path}[{i}]", index)


def with_lines(
    problems: Sequence[SpecProblem], lines: Mapping[str, int] | None
) -> list[SpecProblem]:
    """Each problem with the line of its key, or of its nearest parent that has one."""
    if not lines:
        return list(problems)
    out = []
    for p in problems:
        line = _nearest_line(p.path, lines)
        out.append(p if line is None else SpecProblem(p.path, p.problem, p.value, p.fix, line))
    return out


def _nearest_line(path: str, lines: Mapping[str, int]) -> int | None:
    # A key that is missing or defaulted has no line of its own; point at its nearest parent.
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None
