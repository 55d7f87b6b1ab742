"""Build contexts: deterministic, tagged by content, lint-clean, overridable, self-sufficient."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fermion.environments import parse_environment
from fermion.environments.errors import FermionError
from fermion.runtime_images.catalog import (
    CATALOG_DIR,
    ImageCatalogError,
    UnknownImageError,
    image_names,
    load_image,
)
from fermion.runtime_images.render import (
    OutputFolderError,
    TemplateError,
    TemplateFolderError,
    model_config,
    render,
)
from fermion.runtime_images.server.config import ModelConfig, parse_tensor_spec

from ..conftest import STACKS, environment_data
from ..runtime.conftest import start_server, v2_input

HADOLINT = Path(sys.executable).with_name("hadolint")


def _prod_services(data: dict[str, Any]) -> dict[str, ModelConfig]:
    # prod's own region: its services' certificates are checked against it.
    region = yaml.safe_load((STACKS / "Pulumi.prod.yaml").read_text())["config"]["aws:region"]
    spec = parse_environment(data, "prod", region=region)
    return {s.name: model_config(s) for s in spec.services}


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    config = _prod_services(environment_data("prod"))["classifier"]
    first = render("torch-cuda12", config, tmp_path / "a")
    second = render("torch-cuda12", config, tmp_path / "b")
    assert first.tag == second.tag
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    again = render("torch-cuda12", config, tmp_path / "a")  # re-rendering in place
    assert again.tag == first.tag
    assert first.files == tuple(sorted(_files(tmp_path / "a")))


def test_the_tag_follows_the_model_config_only(tmp_path: Path) -> None:
    data = environment_data("prod")
    before = _prod_services(data)
    changed = copy.deepcopy(data)
    changed["services"][1]["batching"] = {"max_batch_size": 16, "max_delay_ms": 5}  # classifier
    changed["services"][0]["replicas"]["max"] = 2  # embed: not part of any image
    after = _prod_services(changed)
    tag = lambda c, d: render("torch-cuda12", c, tmp_path / d).tag  # noqa: E731
    assert tag(before["classifier"], "c1") != tag(after["classifier"], "c2")
    assert tag(before["reranker"], "r1") == tag(after["reranker"], "r2")
    assert tag(before["embed"], "e1") == tag(after["embed"], "e2")


def test_cpu_and_cuda_pick_their_base_and_torch_index(tmp_path: Path) -> None:
    config = ModelConfig(
        name="m", path="s3://models/m/1/", inputs=(parse_tensor_spec("x:FP32:-1,4"),)
    )
    cpu = (render("torch-cpu", config, tmp_path / "cpu").path / "Dockerfile").read_text()
    cuda = (render("torch-cuda12", config, tmp_path / "cuda").path / "Dockerfile").read_text()
    assert f"FROM {load_image('torch-cpu').base.reference} AS builder" in cpu
    assert "ARG FERMION_TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in cpu
    assert "FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04@sha256:" in cuda
    assert "ARG FERMION_TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128" in cuda
    assert "python3-venv" in cuda and "python3-venv" not in cpu
    for text in (cpu, cuda):
        # dependencies come before code, the user is not root, tini is PID 1
        assert text.index("requirements.txt") < text.index("COPY server/")
        assert "USER 10001" in text and '"/usr/bin/tini", "--"' in text
        assert "HEALTHCHECK" in text and "/v2/health/ready" in text and "EXPOSE 8080" in text
        assert "org.opencontainers.image.base.digest" in text
        assert "model/" not in text.split("COPY server/")[0].split("WORKDIR")[-1]  # not baked


def test_a_missing_template_variable_fails_loudly(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "Dockerfile.j2").write_text(
        "FROM {{ image.base.reference }}\nRUN {{ no_such_thing }}\n"
    )
    config = ModelConfig(name="m", path="s3://b/m/")
    with pytest.raises(TemplateError, match=r"undefined variable .*no_such_thing"):
        render("torch-cpu", config, tmp_path / "out", template_dir=templates)


def test_a_user_template_overrides_a_block(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "Dockerfile.j2").write_text(
        '{% extends "fermion/Dockerfile.j2" %}\n'
        "{% block healthcheck %}\nHEALTHCHECK NONE\n{% endblock %}\n"
        "{% block system_packages %}{{ super() }}\n"
        "RUN echo 'company CA bundle here'\n{% endblock %}\n"
    )
    config = ModelConfig(name="m", path="s3://b/m/")
    text = (
        render("torch-cpu", config, tmp_path / "out", template_dir=templates).path / "Dockerfile"
    ).read_text()
    assert "HEALTHCHECK NONE" in text
    assert "/v2/health/ready" not in text
    assert "company CA bundle here" in text
    assert "useradd --system --uid 10001" in text  # the parent block still renders


@pytest.mark.parametrize("image", image_names())
@pytest.mark.parametrize("baked", [False, True], ids=["fetched", "baked"])
def test_every_dockerfile_passes_hadolint(
    image: str, baked: bool, tmp_path: Path, models: dict[str, Path]
) -> None:
    config = ModelConfig(
        name="affine", path="s3://b/affine/1/", inputs=(parse_tensor_spec("input__0:FP32:-1,4"),)
    )
    context = render(
        image, config, tmp_path / "ctx", bake_model=models["affine"] if baked else None
    )
    done = subprocess.run(
        [str(HADOLINT), str(context.path / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_service_packages_land_in_the_requirements(tmp_path: Path) -> None:
    spec = parse_environment(environment_data("dev"), "dev")
    (embed,) = spec.services
    context = render(
        spec.image_for(embed),
        model_config(embed),
        tmp_path / "ctx",
        pip_packages=tuple(embed.pip_packages),
    )
    requirements = (context.path / "requirements.txt").read_text().splitlines()
    assert "transformers==5.23.0" in requirements
    assert "torch==2.13.0" in requirements
    serving = (context.path / "serving.json").read_text()
    assert '"path": "${FERMION_MODEL_URI}"' in serving
    assert '"handler": "handler.py:EmbeddingHandler"' in serving


def test_a_folder_that_is_not_a_context_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(OutputFolderError, match="holds no rendered context"):
        render("torch-cpu", ModelConfig(name="m", path="s3://b/m/"), tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_the_catalog_rejects_unknown_names_and_keys(tmp_path: Path) -> None:
    with pytest.raises(UnknownImageError, match="torch-cpu, torch-cuda12"):
        load_image("torch-rocm")
    good = (CATALOG_DIR / "torch-cpu.yaml").read_text()
    (tmp_path / "odd.yaml").write_text(good + "colour: blue\n")
    with pytest.raises(ImageCatalogError, match=r"colour.*Allowed keys"):
        load_image("odd", tmp_path)


def test_a_context_runs_from_a_fresh_venv_with_its_requirements_alone(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    config = ModelConfig(
        name="affine", path="unused", inputs=(parse_tensor_spec("input__0:FP32:-1,4"),)
    )
    context = render("torch-cpu", config, tmp_path / "ctx", bake_model=models["affine"])
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(context.path / "requirements.txt")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    # The image serves the baked model from /srv/fermion/model; here it lives in the context.
    serving = (
        (context.path / "serving.json")
        .read_text()
        .replace("/srv/fermion/model", str(context.path / "model"))
    )
    (context.path / "serving.json").write_text(serving)
    server = start_server(
        ["--config", "serving.json"],
        tmp_path,
        python=python,
        module="server",
        cwd=context.path,
        ready_timeout=120,
    )
    try:
        answer = server.infer("affine", {"inputs": [v2_input("input__0", [1, 2, 3, 4], [1, 4])]})
        assert answer.status == 200, answer.body
        assert answer.json()["outputs"][0]["data"] == [3, 5, 7, 9]
    finally:
        assert server.stop() == 0
    assert not shutil.which("fermion", path=str(venv / "bin"))  # fermion itself is not in there


def test_the_catalog_declares_cuda_as_the_shapes_choose_it(tmp_path: Path) -> None:
    from fermion.environments.shapes import CPU_IMAGE, CUDA_IMAGE, image_for, load_shapes

    assert load_image(CUDA_IMAGE).cuda and not load_image(CPU_IMAGE).cuda
    for shape in load_shapes():
        assert load_image(image_for(None, shape)).cuda == shape.is_gpu, shape.name
    undeclared = (CATALOG_DIR / "torch-cpu.yaml").read_text().replace("cuda: false\n", "")
    (tmp_path / "odd.yaml").write_text(undeclared)
    with pytest.raises(ImageCatalogError, match="cuda"):
        load_image("odd", tmp_path)


def _readme_template_example() -> tuple[str, list[str]]:
    """The Dockerfile.j2 of the README's "Runtime images" section, and the files it COPYs."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Runtime images", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```jinja\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's template example has moved"
    template = match.group(1)
    return template, re.findall(r"^COPY (\S+) ", template, re.MULTILINE)


def test_the_readmes_template_example_renders_with_its_files(tmp_path: Path) -> None:
    template, copied = _readme_template_example()
    assert copied == ["company-ca.pem"]
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "Dockerfile.j2").write_text(template)
    (templates / "company-ca.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n")
    config = ModelConfig(name="m", path="s3://b/m/")
    first = render("torch-cpu", config, tmp_path / "a", template_dir=templates)
    assert "company-ca.pem" in first.files and "Dockerfile.j2" not in first.files
    pem = (templates / "company-ca.pem").read_bytes()
    assert (first.path / "company-ca.pem").read_bytes() == pem
    dockerfile = (first.path / "Dockerfile").read_text()
    assert "COPY company-ca.pem /usr/local/share/ca-certificates/company-ca.crt" in dockerfile
    done = subprocess.run(
        [str(HADOLINT), str(first.path / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (templates / "company-ca.pem").write_text("-----BEGIN CERTIFICATE-----\nBBBB\n")
    second = render("torch-cpu", config, tmp_path / "b", template_dir=templates)
    assert second.tag != first.tag


def test_a_template_folder_file_may_not_replace_a_rendered_one(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "serving.json").write_text("{}")
    config = ModelConfig(name="m", path="s3://b/m/")
    with pytest.raises(TemplateFolderError, match=r"serving.json would replace"):
        render("torch-cpu", config, tmp_path / "out", template_dir=templates)
    with pytest.raises(TemplateFolderError, match="is not a folder"):
        render("torch-cpu", config, tmp_path / "out", template_dir=tmp_path / "missing")


def test_a_base_override_and_a_syntax_line_change_the_dockerfile_and_the_tag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ModelConfig(
        name="m", path="s3://models/m/1/", inputs=(parse_tensor_spec("x:FP32:-1,4"),)
    )
    pinned = render("torch-cpu", config, tmp_path / "pinned")
    text = (pinned.path / "Dockerfile").read_text()
    assert not text.startswith("# syntax=")  # the engine's built-in frontend, no image to pull
    mirror = "registry.example.com/python:3.11-slim@sha256:" + "0" * 64
    own = render("torch-cpu", config, tmp_path / "own", base=mirror, dockerfile_syntax="d/f:1")
    text = (own.path / "Dockerfile").read_text()
    assert text.startswith("# syntax=d/f:1\n")
    assert f"FROM {mirror} AS builder" in text and f"FROM {mirror} AS runtime" in text
    assert 'base.name="registry.example.com/python:3.11-slim"' in text
    assert own.tag != pinned.tag
    monkeypatch.setenv("FERMION_BASE_TORCH_CPU", mirror)
    by_variable = render("torch-cpu", config, tmp_path / "variable", dockerfile_syntax="d/f:1")
    assert by_variable.tag == own.tag
    with pytest.raises(FermionError, match="not an image reference"):
        render("torch-cpu", config, tmp_path / "bad", base="two words")
