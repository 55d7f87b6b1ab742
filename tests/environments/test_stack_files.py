from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fermion.environments import (
    EnvironmentNotFoundError,
    EnvironmentSpecError,
    StackFileError,
    find_stacks_dir,
    list_environments,
    load_environment,
)
from fermion.stacks import STACKS_DIR as PACKAGED_STACKS

from ..conftest import STACKS, environment_data

GOOD = """\
config:
  aws:region: eu-west-1
  fermion:environment:
    node_pools:
      - name: gpu
        shape: gpu.t4
        size: {min: 0, max: 3}
    services:
      - name: echo
        shape: gpu.t4
        replicas:
          min: 1
          max: 2
"""


def write(folder: Path, env: str, text: str) -> Path:
    path = folder / f"Pulumi.{env}.yaml"
    path.write_text(text)
    return path


def test_shipped_environments_load_by_name() -> None:
    assert {"dev", "prod"} <= set(list_environments(STACKS))
    dev = load_environment("dev", STACKS)
    assert dev.region == "us-west-2"
    prod = load_environment("prod", STACKS)
    assert prod.region == "us-east-1"


def test_a_stack_file_loads_with_its_region(tmp_path: Path) -> None:
    write(tmp_path, "eu", GOOD)
    spec = load_environment("eu", tmp_path)
    assert spec.name == "eu"
    assert spec.region == "eu-west-1"
    assert spec.services[0].replicas.max == 2


def test_the_region_defaults_when_the_stack_file_has_none(tmp_path: Path) -> None:
    write(tmp_path, "eu", GOOD.replace("  aws:region: eu-west-1\n", ""))
    assert load_environment("eu", tmp_path).region == "us-west-2"


def test_problems_carry_their_line(tmp_path: Path) -> None:
    path = write(tmp_path, "eu", GOOD.replace("min: 1", "min: 3"))
    with pytest.raises(EnvironmentSpecError) as info:
        load_environment("eu", tmp_path)
    (problem,) = info.value.problems
    assert problem.path == "services[0].replicas.max"
    assert problem.line == 13
    message = str(info.value)
    assert message.startswith(f"{path}: 1 problem")
    assert "services[0].replicas.max (line 13): max must be at least min (3) (got 2)" in message


def test_a_missing_key_points_at_its_parent_line(tmp_path: Path) -> None:
    write(
        tmp_path, "eu", GOOD.replace("        shape: gpu.t4\n        replicas", "        replicas")
    )
    with pytest.raises(EnvironmentSpecError) as info:
        load_environment("eu", tmp_path)
    (problem,) = info.value.problems
    assert problem.path == "services[0].shape"
    assert problem.problem == "is required"
    assert problem.line == 9  # the `- name: echo` line that opens services[0]


def test_an_unknown_environment_lists_the_known_ones(tmp_path: Path) -> None:
    write(tmp_path, "dev", GOOD)
    write(tmp_path, "prod", GOOD)
    with pytest.raises(EnvironmentNotFoundError) as info:
        load_environment("staging", tmp_path)
    assert "Known environments: dev, prod" in str(info.value)
    with pytest.raises(EnvironmentNotFoundError, match="holds no Pulumi"):
        load_environment("dev", tmp_path / "empty")


def test_bad_yaml_names_line_and_column(tmp_path: Path) -> None:
    write(tmp_path, "eu", "config:\n  fermion:environment: {services: [\n")
    with pytest.raises(StackFileError, match=r"not valid YAML: .* line 3, column 1"):
        load_environment("eu", tmp_path)


@pytest.mark.parametrize(
    "text", ["", "config: {}\n", "config:\n  aws:region: us-east-1\n", "- a list\n"]
)
def test_a_stack_file_without_the_environment_key(tmp_path: Path, text: str) -> None:
    write(tmp_path, "eu", text)
    with pytest.raises(StackFileError, match="has no `config: fermion:environment:` object"):
        load_environment("eu", tmp_path)


def test_non_utf8_stack_file(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.eu.yaml").write_bytes(b"config:\n  x: \xff\xfe\n")
    with pytest.raises(StackFileError, match="not UTF-8"):
        load_environment("eu", tmp_path)


@pytest.mark.parametrize("env", ["Prod", "my_env", "-x", "a" * 41, "../dev"])
def test_environment_names_must_be_dns_labels(tmp_path: Path, env: str) -> None:
    with pytest.raises(EnvironmentSpecError, match="DNS label"):
        load_environment(env, tmp_path)


def test_an_empty_environment_object_takes_every_default(tmp_path: Path) -> None:
    write(tmp_path, "bare", "config:\n  fermion:environment: {}\n")
    spec = load_environment("bare", tmp_path)
    assert spec.services == []


def test_the_yml_suffix_is_read_too(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.eu.yml").write_text(GOOD)
    assert load_environment("eu", tmp_path).name == "eu"


def test_loading_leaves_the_file_untouched(tmp_path: Path) -> None:
    path = write(tmp_path, "eu", GOOD.replace("max: 2", "max: 0"))
    before = path.read_bytes()
    with pytest.raises(EnvironmentSpecError):
        load_environment("eu", tmp_path)
    assert path.read_bytes() == before


class TestFindStacksDir:
    def test_explicit_wins(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FERMION_STACKS_DIR", "/elsewhere")
        assert find_stacks_dir(tmp_path, PACKAGED_STACKS) == tmp_path

    def test_environment_variable(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FERMION_STACKS_DIR", str(tmp_path))
        assert find_stacks_dir(None, PACKAGED_STACKS) == tmp_path

    def test_nearest_fermion_project(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("FERMION_STACKS_DIR", raising=False)
        (tmp_path / "Pulumi.yaml").write_text(
            yaml.safe_dump({"name": "fermion", "runtime": "python", "stackConfigDir": "envs"})
        )
        deep = tmp_path / "a" / "b"
        deep.mkdir(parents=True)
        assert find_stacks_dir(None, PACKAGED_STACKS, start=deep) == tmp_path / "envs"

    def test_another_project_is_not_ours(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("FERMION_STACKS_DIR", raising=False)
        (tmp_path / "Pulumi.yaml").write_text("name: website\nruntime: nodejs\n")
        assert find_stacks_dir(None, PACKAGED_STACKS, start=tmp_path) == PACKAGED_STACKS

    def test_repository_checkout(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("FERMION_STACKS_DIR", raising=False)
        assert (
            find_stacks_dir(None, PACKAGED_STACKS, start=STACKS.parent).resolve()
            == STACKS.resolve()
        )


def test_conftest_reads_the_same_data() -> None:
    assert environment_data("dev")["node_pools"][0]["shape"] == "gpu.l4"


def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path: Path) -> None:
    text = GOOD.replace(
        "        replicas:\n", "        replicas: {min: 5, max: 9}\n        replicas:\n"
    )
    path = write(tmp_path, "eu", text)
    before = path.read_bytes()
    with pytest.raises(EnvironmentSpecError) as info:
        load_environment("eu", tmp_path)
    (problem,) = info.value.problems
    assert problem.path == "services[0].replicas"
    assert "'replicas' is given twice, at lines 11 and 12" in str(problem)
    assert problem.line == 12
    assert path.read_bytes() == before


def test_a_key_given_twice_outside_the_environment_is_named_too(tmp_path: Path) -> None:
    write(
        tmp_path, "eu", GOOD.replace("  aws:region: eu-west-1\n", "  aws:region: eu-west-1\n" * 2)
    )
    with pytest.raises(EnvironmentSpecError) as info:
        load_environment("eu", tmp_path)
    (problem,) = info.value.problems
    assert problem.path == "config.aws:region"
    assert "at lines 2 and 3" in str(problem)
