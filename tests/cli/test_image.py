from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from fermion.cli import app

from ..conftest import STACKS

runner = CliRunner()


def test_image_list() -> None:
    result = runner.invoke(app, ["image", "list", "--json"])
    assert result.exit_code == 0
    names = [image["name"] for image in json.loads(result.stdout)]
    assert names == ["torch-cpu", "torch-cuda12"]


def test_render_a_service_of_an_environment(tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    args = ["image", "render", "embed", "--env", "dev", "--stacks-dir", str(STACKS), "-o", str(out)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["image"] == "torch-cuda12"  # gpu.l4 service
    assert len(data["tag"]) == 16
    assert "Dockerfile" in data["files"] and "serving.json" in data["files"]
    again = runner.invoke(app, args)
    assert again.exit_code == 0
    assert data["tag"] in again.stdout


def test_render_a_local_model(tmp_path: Path, models: dict[str, Path]) -> None:
    out = tmp_path / "ctx"
    result = runner.invoke(
        app,
        [
            "image",
            "render",
            "--image",
            "torch-cpu",
            "--model",
            str(models["affine"]),
            "--input",
            "input__0:FP32:-1,4",
            "-o",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert "model/affine.pt" in json.loads(result.stdout)["files"]
    assert '"path": "/srv/fermion/model/affine.pt"' in (out / "serving.json").read_text()


def test_render_errors_name_the_fix(tmp_path: Path) -> None:
    missing = runner.invoke(
        app,
        [
            "image",
            "render",
            "nope",
            "--env",
            "dev",
            "--stacks-dir",
            str(STACKS),
            "-o",
            str(tmp_path / "x"),
        ],
    )
    assert missing.exit_code == 1
    assert "environment 'dev' has no service 'nope' (it has: embed)" in missing.stderr
    neither = runner.invoke(app, ["image", "render", "-o", str(tmp_path / "y")])
    assert neither.exit_code == 1 and "give a SERVICE with --env" in neither.stderr
    bad_image = runner.invoke(
        app,
        [
            "image",
            "render",
            "--image",
            "torch-rocm",
            "--model",
            str(tmp_path),
            "-o",
            str(tmp_path / "z"),
        ],
    )
    assert bad_image.exit_code == 1 and "unknown runtime image 'torch-rocm'" in bad_image.stderr
    bad_input = runner.invoke(
        app,
        [
            "image",
            "render",
            "--image",
            "torch-cpu",
            "--model",
            str(tmp_path),
            "--input",
            "x:FP9:1",
            "-o",
            str(tmp_path / "w"),
        ],
    )
    assert bad_input.exit_code == 1 and "datatype 'FP9'" in bad_input.stderr


def _fake_docker(
    folder: Path, log: Path, version: str, buildx: bool = False, engine: bool = True
) -> Path:
    """A `docker` that logs how it was run: a client of `version`, with or without buildx, with
    or without an engine behind it."""
    folder.mkdir(parents=True)
    script = folder / "docker"
    script.write_text(
        f"""#!/bin/sh
echo "$0 $* DOCKER_BUILDKIT=${{DOCKER_BUILDKIT:-}}" >> {log}
case "$1" in
  --version) echo "Docker version {version}, build 0000000" ;;
  info) {"echo 20.10.24" if engine else "echo 'Cannot connect to the Docker daemon' >&2; exit 1"} ;;
  buildx) {"exit 0" if buildx else "echo 'docker: unknown command: docker buildx' >&2; exit 1"} ;;
  build)
    # What the build's secrets hold, while it runs.
    for arg in "$@"; do
      case "$arg" in id=*,src=*) echo "secret ${{arg%%,*}}:"; /bin/cat "${{arg#*,src=}}" ;; esac
    done >> {log} ;;
  image) echo '[{{"Id": "sha256:0", "Size": 1000000}}]' ;;
esac
"""
    )
    script.chmod(0o755)
    return script


def _build(monkeypatch: pytest.MonkeyPatch, *folders: Path) -> Result:
    monkeypatch.setenv("PATH", os.pathsep.join(str(f) for f in folders))
    return runner.invoke(
        app, ["image", "build", "embed", "--env", "dev", "--stacks-dir", str(STACKS)]
    )


def _builds(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if " build " in line]


def test_build_uses_buildx_where_the_client_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "log"
    docker = _fake_docker(tmp_path / "bin", log, "28.2.2", buildx=True)
    result = _build(monkeypatch, docker.parent)
    assert result.exit_code == 0, result.output
    (build,) = _builds(log)
    assert build.startswith(f"{docker} buildx build --tag fermion-local:")
    assert " --load " in build
    # The engine may have no bridge: every build runs on the host network.
    assert " --network host " in build and " --allow network.host " in build


def test_build_without_buildx_uses_an_older_client_that_drives_buildkit_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "log"
    newer = _fake_docker(tmp_path / "local", log, "28.2.2")
    older = _fake_docker(tmp_path / "usr", log, "20.10.24+dfsg1")
    result = _build(monkeypatch, newer.parent, older.parent)
    assert result.exit_code == 0, result.output
    (build,) = _builds(log)
    assert build.startswith(f"{older} build --tag fermion-local:")
    assert build.endswith("DOCKER_BUILDKIT=1")
    assert "--load" not in build and "buildx build" not in build
    assert "built fermion-local:" in result.stdout


def test_build_says_what_is_missing_when_no_client_can_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "log"
    newer = _fake_docker(tmp_path / "bin", log, "28.2.2")
    result = _build(monkeypatch, newer.parent)
    assert result.exit_code == 1
    assert not _builds(log)
    assert "no docker client here can build with BuildKit" in result.stderr
    assert "buildx" in result.stderr and "apt-get install docker-buildx" in result.stderr
    assert "unknown flag" not in result.output


def test_build_without_docker_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    result = _build(monkeypatch, tmp_path / "empty")
    assert result.exit_code == 1
    assert "no Docker engine is available (the docker command is not on PATH)" in result.stderr
    assert "docker buildx build DIR" in result.stderr


def test_build_without_a_running_engine_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "log"
    docker = _fake_docker(tmp_path / "bin", log, "28.2.2", buildx=True, engine=False)
    result = _build(monkeypatch, docker.parent)
    assert result.exit_code == 1
    assert "no Docker engine is available (Cannot connect to the Docker daemon)" in result.stderr
    assert not _builds(log)


def test_an_air_gapped_build_passes_sources_and_ca_as_secrets_that_outlive_it_nowhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "log"
    docker = _fake_docker(tmp_path / "usr", log, "20.10.24+dfsg1")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    ca = tmp_path / "proxy-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nproxy-ca\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("PATH", str(docker.parent))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    result = runner.invoke(
        app,
        [
            "image",
            "build",
            "embed",
            "--env",
            "dev",
            "--stacks-dir",
            str(STACKS),
            "--base",
            "registry.example.com/python:3.11-slim-bookworm",
            "--index-url",
            "https://ci:token@mirror.example.com/simple/",
            "--find-links",
            str(wheels),
            "--ca-bundle",
            str(ca),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    (build,) = _builds(log)
    assert " --network host " in build
    assert "--secret id=pip-config,src=" in build and "--secret id=pip-ca-bundle,src=" in build
    # The mirror replaces the catalog's torch index, which is no longer passed.
    assert "--build-arg FERMION_TORCH_INDEX_URL= " in build
    assert "mirror.example.com" not in build
    secrets = log.read_text().split("\nsecret id=", 1)[1]
    assert "index-url = https://ci:token@mirror.example.com/simple/" in secrets
    assert "find-links = http://127.0.0.1:" in secrets
    assert "cert = /run/secrets/pip-ca-bundle" in secrets
    assert secrets.count("BEGIN CERTIFICATE") > 1 and "proxy-ca" in secrets  # public roots too
    assert list((tmp_path / "scratch").iterdir()) == []  # the secret files are gone
    assert json.loads(result.stdout)["size_bytes"] == 1000000


def test_a_folder_source_is_served_on_loopback_for_the_build_only(tmp_path: Path) -> None:
    import urllib.parse
    import urllib.request

    from fermion.cli.build_sources import BuildSources, prepared

    (tmp_path / "pypi" / "simple" / "demo").mkdir(parents=True)
    (tmp_path / "pypi" / "files").mkdir()
    (tmp_path / "pypi" / "files" / "demo-1.0-py3-none-any.whl").write_bytes(b"wheel")
    (tmp_path / "pypi" / "simple" / "demo" / "index.html").write_text(
        '<a href="../../files/demo-1.0-py3-none-any.whl">demo</a>'
    )
    sources = BuildSources(extra_index_urls=(f"file://{tmp_path / 'pypi' / 'simple'}",))
    with prepared(sources, "torch-cpu", tmp_path / "secrets") as ready:
        config = ready.secrets["pip-config"].read_text()
        index = config.split("extra-index-url = ", 1)[1].split()[0]
        assert index.startswith("http://127.0.0.1:") and index.endswith("/simple/")
        # The index's relative links reach the sibling folder of files.
        wheel = urllib.parse.urljoin(index + "demo/", "../../files/demo-1.0-py3-none-any.whl")
        with urllib.request.urlopen(wheel, timeout=5) as answer:
            assert answer.read() == b"wheel"
    with pytest.raises(OSError):
        urllib.request.urlopen(wheel, timeout=2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--push", "registry.example.com/team/name:v1"], "without a tag or digest"),
        (["--ca-bundle", "/no/such/ca.pem"], "--ca-bundle /no/such/ca.pem: is not a file"),
        (["--find-links", "/no/such/wheels"], "neither an http(s) URL nor a folder here"),
    ],
)
def test_build_options_that_cannot_work_name_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: list[str], message: str
) -> None:
    docker = _fake_docker(tmp_path / "usr", tmp_path / "log", "20.10.24+dfsg1")
    monkeypatch.setenv("PATH", str(docker.parent))
    result = runner.invoke(
        app,
        ["image", "build", "embed", "--env", "dev", "--stacks-dir", str(STACKS), *options],
    )
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output
