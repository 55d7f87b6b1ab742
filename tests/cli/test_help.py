"""Every command's --help shows a flag as a flag: no `<bool>` beside one, as if it took a value."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fermion.cli import app

from .test_flags import command_flags

runner = CliRunner()


@pytest.mark.parametrize("path", sorted(command_flags()), ids=lambda p: " ".join(p) or "fermion")
def test_no_help_shows_a_type_beside_a_flag(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--help" in result.stdout
    assert "<bool>" not in result.stdout


def test_options_that_take_a_value_still_show_its_type() -> None:
    result = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    port = next(line for line in result.stdout.splitlines() if "--port " in line)
    assert "<int>" in port
    compile_flag = next(line for line in result.stdout.splitlines() if "--compile " in line)
    assert "<" not in compile_flag


@pytest.mark.parametrize("path", sorted(command_flags()), ids=lambda p: " ".join(p) or "fermion")
def test_a_help_paragraph_breaks_only_where_the_terminal_does(path: tuple[str, ...]) -> None:
    # Wide enough that no paragraph of a docstring needs wrapping: each is one line, then.
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"})
    lines = [line.strip() for line in result.stdout.split("╭")[0].splitlines()]
    text = [line for line in lines if line and not line.startswith("Usage:")]
    paragraphs = "\n".join(lines).split("\n\n")
    assert text, result.stdout
    for paragraph in paragraphs:
        assert "\n" not in paragraph.strip() or paragraph.strip().startswith("Usage:"), paragraph
