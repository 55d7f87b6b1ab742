from __future__ import annotations

from pathlib import Path

from fermion.components import RuntimeImage, RuntimeImageArgs
from fermion.runtime_images.server.config import ModelConfig, parse_tensor_spec

from .conftest import Recorder, resolve

REPO = "123456789012.dkr.ecr.us-west-2.amazonaws.com/fermion/runtime"
DIGEST = "sha256:" + "ab" * 32


def _args(tmp_path: Path, **overrides: object) -> RuntimeImageArgs:
    model = ModelConfig(
        name="classifier",
        path="${FERMION_MODEL_URI}",
        inputs=(parse_tensor_spec("input__0:FP32:-1,3,224,224"),),
        max_batch_size=16,
    )
    values: dict[str, object] = {
        "image": "torch-cuda12",
        "model": model,
        "repository_url": REPO,
        "registry_id": "123456789012",
        "context_dir": tmp_path / "contexts",
    }
    values.update(overrides)
    return RuntimeImageArgs(**values)  # type: ignore[arg-type]


def _mock_registry(mocks: Recorder) -> None:
    mocks.outputs["docker-build:index:Image"] = {"digest": DIGEST, "ref": f"{REPO}@{DIGEST}"}
    mocks.call_results["aws:ecr/getAuthorizationToken:getAuthorizationToken"] = {
        "userName": "AWS",
        "password": "token",
        "authorizationToken": "QVdTOnRva2Vu",
        "proxyEndpoint": f"https://{REPO.split('/')[0]}",
        "expiresAt": "2026-11-23T00:00:00Z",
        "id": "123456789012",
        "registryId": "123456789012",
        "region": "us-west-2",
    }


def test_builds_and_pushes_the_rendered_context(mocks: Recorder, tmp_path: Path) -> None:
    _mock_registry(mocks)
    component = RuntimeImage("classifier", _args(tmp_path))
    assert resolve(component.image_ref) == f"{REPO}@{DIGEST}"
    (image,) = mocks.of_type("docker-build:index:Image")
    inputs = image.inputs
    assert inputs["tags"] == [f"{REPO}:{component.tag}"]
    assert inputs["push"] is True
    # `pulumi preview` must not build (and so pull CUDA base layers for) every image.
    assert inputs["buildOnPreview"] is False
    assert inputs["platforms"] == ["linux/amd64"]
    context = Path(inputs["context"]["location"])
    assert context == tmp_path / "contexts" / "classifier"
    # No `# syntax=` line: the builder's own frontend, with no frontend image to pull.
    assert not (context / "Dockerfile").read_text().startswith("# syntax=")
    assert inputs["buildArgs"] == {
        "FERMION_TORCH_INDEX_URL": "https://download.pytorch.org/whl/cu128"
    }
    assert "secrets" not in inputs
    assert inputs["dockerfile"]["location"] == str(context / "Dockerfile")
    (registry,) = inputs["registries"]
    assert registry["address"] == REPO.split("/")[0]
    assert registry["username"] == "AWS"
    assert inputs["cacheFrom"][0]["registry"]["ref"] == f"{REPO}:buildcache"
    assert inputs["cacheTo"][0]["registry"]["mode"] == "max"
    assert inputs["labels"]["dev.fermion.context-tag"] == component.tag
    (call,) = mocks.calls
    assert call.args.get("registryId") == "123456789012"


def test_the_tag_is_the_content_hash(mocks: Recorder, tmp_path: Path) -> None:
    _mock_registry(mocks)
    first = RuntimeImage("a", _args(tmp_path))
    same = RuntimeImage("b", _args(tmp_path))
    other_model = ModelConfig(
        name="classifier",
        path="${FERMION_MODEL_URI}",
        max_batch_size=32,
        inputs=(parse_tensor_spec("input__0:FP32:-1,3,224,224"),),
    )
    changed = RuntimeImage("c", _args(tmp_path, model=other_model))
    cpu = RuntimeImage("d", _args(tmp_path, image="torch-cpu"))
    assert first.tag == same.tag
    assert len({first.tag, changed.tag, cpu.tag}) == 3


def test_children_are_parented_to_the_component(mocks: Recorder, tmp_path: Path) -> None:
    _mock_registry(mocks)
    component = RuntimeImage("classifier", _args(tmp_path))
    urn = resolve(component.image.urn)
    assert "fermion:index:RuntimeImage$docker-build:index:Image::classifier" in urn
    assert resolve(component.urn).endswith("fermion:index:RuntimeImage::classifier")


def test_an_air_gapped_build_gets_its_base_and_sources_as_secrets(
    mocks: Recorder, tmp_path: Path
) -> None:
    from fermion.runtime_images.render import PipSources

    _mock_registry(mocks)
    mirror = "https://ci:token@mirror.example.com/pypi/simple/"
    component = RuntimeImage(
        "classifier",
        _args(
            tmp_path,
            image="torch-cpu",
            base="registry.example.com/python:3.11-slim-bookworm",
            pip_sources=PipSources(index_url=mirror),
            ca_bundle_pem="-----BEGIN CERTIFICATE-----\nproxy\n-----END CERTIFICATE-----\n",
            dockerfile_syntax="registry.example.com/docker/dockerfile:1.7",
        ),
    )
    assert resolve(component.image_ref) == f"{REPO}@{DIGEST}"
    (image,) = mocks.of_type("docker-build:index:Image")
    inputs = image.inputs
    dockerfile = (Path(component.context_path) / "Dockerfile").read_text()
    assert dockerfile.startswith("# syntax=registry.example.com/docker/dockerfile:1.7\n")
    assert "FROM registry.example.com/python:3.11-slim-bookworm AS runtime" in dockerfile
    # The mirror replaces the catalog's torch index, and reaches the build only as a secret.
    assert inputs["buildArgs"] == {"FERMION_TORCH_INDEX_URL": ""}
    secrets = inputs["secrets"]["value"]  # the engine keeps them as a secret
    assert f"index-url = {mirror}" in secrets["pip-config"]
    assert "cert = /run/secrets/pip-ca-bundle" in secrets["pip-config"]
    assert secrets["pip-ca-bundle"].endswith("proxy\n-----END CERTIFICATE-----\n")
    assert mirror not in dockerfile and mirror not in str(inputs["buildArgs"])
