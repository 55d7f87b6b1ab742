"""Setting one value in a stack file while keeping the rest of it, comments and all, as written.

Loading a YAML file and dumping it again loses its comments, order and quoting. Instead, the
document's node tree (`yaml.compose`) gives the exact place of the value, and only those
characters of the text change. The result is checked (it parses to the same document with only
that value changed, and is still a valid environment) before it replaces the file atomically.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from fermion.environments.errors import FermionError, StackFileError
from fermion.environments.stack_files import ENVIRONMENT_KEY, read_stack_config

__all__ = ["StackFileEditError", "set_model_version"]


class StackFileEditError(FermionError):
    """A stack file that fermion cannot edit safely; it was left as it was."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        super().__init__(
            f"{path}: cannot set the model version ({problem}); the file was not changed. "
            "Set model.version by hand"
        )


def set_model_version(path: Path, env: str, service: str, version: str) -> bool:
    """Set `model.version` of `service` in the stack file at `path` to `version`.

    Returns False when it was set to that already. On any failure the file is unchanged.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise StackFileError(path, "is not UTF-8 text", "Save it as UTF-8") from None
    new_text = _edited(path, text, service, version)
    if new_text == text:
        return False
    _check(path, text, new_text, env, service, version)
    _replace(path, new_text)
    return True


def _edited(path: Path, text: str, service: str, version: str) -> str:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise StackFileEditError(path, f"it is not valid YAML: {exc}") from None
    environment = _child(_child(root, "config"), ENVIRONMENT_KEY)
    services = _child(environment, "services")
    if not isinstance(services, yaml.SequenceNode):
        raise StackFileEditError(path, "it has no `services:` list")
    entry = next(
        (
            s
            for s in services.value
            if isinstance(s, yaml.MappingNode)
            and isinstance(name := _child(s, "name"), yaml.ScalarNode)
            and name.value == service
        ),
        None,
    )
    if entry is None:
        raise StackFileEditError(path, f"it has no service named {service!r}")
    quoted = f'"{version}"'
    model = _child(entry, "model")
    if model is None:
        return _insert_pair(path, text, entry, "model", f"{{version: {quoted}}}")
    if not isinstance(model, yaml.MappingNode):
        raise StackFileEditError(path, f"{service}'s `model:` is not a mapping")
    current = _child(model, "version")
    if current is None:
        return _insert_pair(path, text, model, "version", quoted)
    if not isinstance(current, yaml.ScalarNode):
        raise StackFileEditError(path, f"{service}'s model.version is not a single value")
    if current.value == version:
        return text
    if current.style == "'":
        quoted = f"'{version}'"
    start, end = current.start_mark.index, current.end_mark.index
    return text[:start] + quoted + text[end:]


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key and isinstance(v, yaml.Node):
            return v
    return None


def _insert_pair(path: Path, text: str, mapping: yaml.MappingNode, key: str, value: str) -> str:
    """`text` with `key: value` added to `mapping`: inside the braces of a flow mapping, or as a
    line of its own, at the indentation of the mapping's first key, in a block mapping."""
    if mapping.flow_style:
        close = mapping.end_mark.index - 1
        if text[close] != "}":
            raise StackFileEditError(path, f"the mapping that should hold `{key}` is not closed")
        separator = ", " if mapping.value else ""
        body = text[:close].rstrip()
        return f"{body}{separator}{key}: {value}{text[len(body) : close]}{text[close:]}"
    if not mapping.value:
        raise StackFileEditError(path, f"the mapping that should hold `{key}` is empty")
    first_key, first_value = mapping.value[0]
    indent = " " * first_key.start_mark.column
    if isinstance(first_value, yaml.ScalarNode) and first_value.end_mark.line == (
        first_key.start_mark.line
    ):
        # After the first pair's line: the first key of a list item shares its line with `- `.
        line = first_key.start_mark.line + 1
    else:
        line = first_key.start_mark.line
        if _line_start(text, line) != first_key.start_mark.index - first_key.start_mark.column:
            raise StackFileEditError(path, f"cannot find a line of its own for `{key}`")
    at = _line_start(text, line)
    newline = "\r\n" if "\r\n" in text else "\n"
    if at == len(text) and not text.endswith("\n"):
        return f"{text}{newline}{indent}{key}: {value}{newline}"
    return f"{text[:at]}{indent}{key}: {value}{newline}{text[at:]}"


def _line_start(text: str, line: int) -> int:
    """The index of the first character of 0-based `line`, or len(text) past the last line."""
    at = 0
    for _ in range(line):
        found = text.find("\n", at)
        if found < 0:
            return len(text)
        at = found + 1
    return at


def _check(path: Path, old: str, new: str, env: str, service: str, version: str) -> None:
    """The edited text must load as the old document with only the one value changed, and be a
    valid environment."""
    try:
        before: Any = yaml.safe_load(old)
        after: Any = yaml.safe_load(new)
    except yaml.YAMLError as exc:
        raise StackFileEditError(path, f"the edit did not give valid YAML ({exc})") from None
    expected = copy.deepcopy(before)
    for entry in expected["config"][ENVIRONMENT_KEY]["services"]:
        if isinstance(entry, dict) and entry.get("name") == service:
            model = entry.get("model")
            if model is None:
                entry["model"] = {"version": version}
            else:
                model["version"] = version
    if after != expected:
        raise StackFileEditError(path, "the edit would change more than model.version")
    with tempfile.TemporaryDirectory() as folder:
        trial = Path(folder) / path.name
        trial.write_bytes(new.encode("utf-8"))
        try:
            read_stack_config(trial).spec(env)
        except FermionError as exc:
            raise StackFileEditError(
                path, f"the result is not a valid environment: {exc}"
            ) from None


def _replace(path: Path, text: str) -> None:
    """Write `text` to `path` atomically: a temporary file beside it, renamed over it."""
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(text.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        shutil.copymode(path, temp)
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
