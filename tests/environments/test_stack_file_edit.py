"""Setting a service's model.version in a stack file changes that value and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fermion.environments.stack_file_edit import StackFileEditError, set_model_version
from fermion.environments.stack_files import read_stack_file

HEAD = """\
# comment at the top
config:
  aws:region: us-west-2   # the region
  fermion:environment:
    node_pools:
      - {name: cpu, shape: cpu.small, size: {min: 0, max: 8}}
    services:
"""


def _write(tmp_path: Path, services: str, newline: str = "\n") -> Path:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_bytes((HEAD + services).replace("\n", newline).encode())
    return path


def _version(path: Path, service: str) -> str:
    spec = read_stack_file(path, "dev")
    return next(s.model.version for s in spec.services if s.name == service)


def test_replaces_the_value_in_place(tmp_path: Path) -> None:
    services = """\
      - name: a
        shape: cpu.small
        model:
          format: handler  # keep me
          handler: h.py:H
          version: '1'   # the served version
        replicas: {min: 0, max: 2}
"""
    path = _write(tmp_path, services)
    before = path.read_text()
    assert set_model_version(path, "dev", "a", "2.0")
    assert path.read_text() == before.replace("version: '1'", "version: '2.0'")
    assert _version(path, "a") == "2.0"
    assert not set_model_version(path, "dev", "a", "2.0")


def test_adds_the_key_to_a_block_model(tmp_path: Path) -> None:
    services = """\
      - name: a
        shape: cpu.small
        model:
          format: handler
          handler: h.py:H
"""
    path = _write(tmp_path, services)
    assert set_model_version(path, "dev", "a", "7")
    assert path.read_text() == HEAD + services.replace(
        "format: handler\n", 'format: handler\n          version: "7"\n'
    )


def test_adds_the_key_to_a_flow_model(tmp_path: Path) -> None:
    services = """\
      - name: a
        shape: cpu.small
        model: {format: handler, handler: "h.py:H"}  # inline
"""
    path = _write(tmp_path, services)
    assert set_model_version(path, "dev", "a", "3")
    assert path.read_text() == HEAD + services.replace('"h.py:H"}', '"h.py:H", version: "3"}')


def test_adds_a_model_to_a_service_without_one(tmp_path: Path) -> None:
    services = """\
      - name: a
        shape: cpu.small
        model: {format: handler, handler: "h.py:H"}
      - name: b   # second
        shape: cpu.small
        model: {format: handler, handler: "h.py:H", version: "1"}
      - name: c
        shape: cpu.small
"""
    path = _write(tmp_path, services)
    assert set_model_version(path, "dev", "c", "4")
    assert path.read_text() == HEAD + services.replace(
        "name: c\n", 'name: c\n        model: {version: "4"}\n'
    )
    assert _version(path, "c") == "4"
    assert _version(path, "a") == "1"


def test_keeps_windows_line_endings(tmp_path: Path) -> None:
    services = """\
      - name: a
        shape: cpu.small
        model:
          format: handler
          handler: h.py:H
"""
    path = _write(tmp_path, services, newline="\r\n")
    assert set_model_version(path, "dev", "a", "5")
    text = path.read_bytes().decode()
    assert "\r\n" in text and "\n" not in text.replace("\r\n", "")
    assert _version(path, "a") == "5"


def test_a_result_that_is_not_valid_leaves_the_file_alone(tmp_path: Path) -> None:
    services = """\
      - name: a
        shape: cpu.small
        model: {format: handler, handler: "h.py:H"}
"""
    path = _write(tmp_path, services)
    before = path.read_bytes()
    with pytest.raises(StackFileEditError, match="the file was not changed"):
        set_model_version(path, "dev", "a", "-bad")
    with pytest.raises(StackFileEditError, match="no service named 'zzz'"):
        set_model_version(path, "dev", "zzz", "2")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["Pulumi.dev.yaml"]
    assert yaml.safe_load(before) is not None
