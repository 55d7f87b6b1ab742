"""The README's examples, served for real: the TorchScript classifier and the MiniLM handler."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import REPO
from ..runtime.conftest import Server, free_port, start_server, v2_input

EXAMPLES = REPO / "examples"


def _classifier_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "classifier_build", EXAMPLES / "classifier" / "build.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build_classifier(out: Path) -> Path:
    path: Path = _classifier_module().build(out)
    return path


def test_classifier_names_the_dominant_colour(tmp_path: Path) -> None:
    path = _build_classifier(tmp_path)
    image = _classifier_module().sample_image
    server = start_server([str(path), "--input", "input__0:FP32:-1,3,64,64"], tmp_path)
    try:
        for channel in range(3):
            body = {"inputs": [v2_input("input__0", image(channel), [1, 3, 64, 64])]}
            answer = server.infer("classifier", body)
            assert answer.status == 200, answer.body
            logits = answer.json()["outputs"][0]["data"]
            assert max(range(3), key=lambda i: logits[i]) == channel
    finally:
        assert server.stop() == 0


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        [str(EXAMPLES / "embeddings"), "--max-batch-size", "32"],
        tmp_path_factory.mktemp("embeddings"),
        env={"HF_HUB_OFFLINE": "1"},
    )
    yield server
    server.stop()


def _embed(server: Server, sentences: list[str]) -> list[list[float]]:
    answer = server.infer(
        "embeddings", {"inputs": [v2_input("text", sentences, [len(sentences)], "BYTES")]}
    )
    assert answer.status == 200, answer.body
    out = answer.json()["outputs"][0]
    assert out["shape"] == [len(sentences), 384]
    flat = out["data"]
    return [flat[i * 384 : (i + 1) * 384] for i in range(len(sentences))]


def test_similar_sentences_score_higher(embeddings: Server) -> None:
    cat, kitten, market = _embed(
        embeddings,
        [
            "A cat sits on the mat.",
            "A kitten is resting on a rug.",
            "The stock market fell sharply today.",
        ],
    )
    for vector in (cat, kitten, market):
        assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-4)
    similar = sum(a * b for a, b in zip(cat, kitten, strict=True))
    unrelated = sum(a * b for a, b in zip(cat, market, strict=True))
    assert similar > 0.5 > unrelated
    assert similar - unrelated > 0.3


def test_embeddings_are_the_same_alone_or_batched(embeddings: Server) -> None:
    (alone,) = _embed(embeddings, ["A cat sits on the mat."])
    together = _embed(
        embeddings, ["A cat sits on the mat.", "Something much longer than that, padded."]
    )
    assert all(math.isclose(a, b, abs_tol=1e-5) for a, b in zip(alone, together[0], strict=True))


def test_fermion_serve_prints_a_curl_that_works(tmp_path: Path) -> None:
    path = _build_classifier(tmp_path)
    port = free_port()
    fermion = Path(sys.executable).with_name("fermion")
    process = subprocess.Popen(
        [
            str(fermion),
            "serve",
            str(path),
            "--input",
            "input__0:FP32:-1,3,64,64",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if line.strip().startswith("infer:"):
                break
        command = re.sub(r"^\s*infer:\s*", "", lines[-1]).strip()
        assert f"localhost:{port}/v2/models/classifier/infer" in command, "".join(lines)
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60)
        assert '"model_name":"classifier"' in done.stdout, done.stdout + done.stderr
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


def test_the_demo_that_make_demo_runs(tmp_path: Path) -> None:
    # The demo polls readiness while the server starts on a port it already holds, where a
    # poll can time out rather than be refused.
    model = _build_classifier(tmp_path)
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "classifier" / "demo.py"), str(model)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    for colour in ("red", "green", "blue"):
        assert f"a mostly {colour} image -> {colour}" in done.stdout
    assert "server stopped on SIGTERM with exit code 0" in done.stdout
