"""Output that goes to a file or a pipe: whole lines, and exit 0 when the reader stops early."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FERMION = [sys.executable, "-m", "fermion.cli"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env.pop("FERMION_STACKS_DIR", None)
    return env


def test_a_plan_written_to_a_file_keeps_types_and_names_whole(tmp_path: Path) -> None:
    target = tmp_path / "plan.txt"
    with target.open("w") as out:
        subprocess.run([*FERMION, "plan", "prod"], stdout=out, check=True, timeout=120, env=_env())
    text = target.read_text()
    assert (
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
        in text
    )
    for zone in range(3):
        assert f"prod-network-nat-{zone}" in text
    cost = text.split("cost per hour", 1)[1]
    assert "us-east-1 prices read" in cost.splitlines()[0]
    assert all(line.count("│") in (0, 7) for line in cost.splitlines() if line.startswith("│"))


@pytest.mark.parametrize(
    "command",
    [["plan", "prod"], ["plan", "prod", "--json"], ["shapes"], ["--help"], ["validate"]],
    ids=" ".join,
)
def test_a_reader_that_stops_early_is_not_a_failure(command: list[str]) -> None:
    process = subprocess.Popen(
        [*FERMION, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()
    process.stdout.close()  # as `head -1` does
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 0, stderr
    assert stderr == b""
