"""compile (torch.compile) takes torch.export programs; a TorchScript file is refused at load
with the fix, instead of failing at its first call."""

from __future__ import annotations

from pathlib import Path

from .conftest import start_server


def test_compile_is_refused_for_torchscript_with_the_fix(
    models: dict[str, Path], logs: Path
) -> None:
    server = start_server(
        [str(models["linear4"]), "--input", "input__0:FP32:-1,4", "--compile"],
        logs,
        wait_ready=False,
    )
    try:
        assert server.process.wait(timeout=60) == 1
    finally:
        server.stop()
    assert "does not take TorchScript modules" in server.output()
    assert "torch.export.save to a .pt2 file" in server.output()
