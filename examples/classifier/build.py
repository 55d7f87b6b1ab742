"""Build the example image classifier as a TorchScript archive.

The network is made in code, with weights set by hand rather than trained: it tells the
dominant colour of a 3x64x64 RGB image (0 red, 1 green, 2 blue), so its answers can be checked.

    python examples/classifier/build.py OUT_DIR
    fermion serve OUT_DIR/classifier.pt --input input__0:FP32:-1,3,64,64
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

LABELS = ("red", "green", "blue")


class ColourClassifier(nn.Module):
    """Convolution, pooling and a linear head; logits favour the channel brightest on average."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 3, kernel_size=3, padding=1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(3, 3)
        with torch.no_grad():
            # A 3x3 box blur per channel keeps each colour apart...
            self.features.weight.zero_()
            for c in range(3):
                self.features.weight[c, c] = 1.0 / 9.0
            # ...and the head scores each channel against the other two.
            self.head.weight.copy_(torch.tensor([[2.0, -1, -1], [-1, 2.0, -1], [-1, -1, 2.0]]))
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.features(x))
        return self.head(self.pool(x).flatten(1))


def sample_image(channel: int, bright: float = 0.8, dim: float = 0.2) -> list[float]:
    """A flat 3x64x64 image, brightest in `channel` (0 red, 1 green, 2 blue), as V2 JSON data."""
    pixels = 64 * 64
    data = [dim] * (3 * pixels)
    data[channel * pixels : (channel + 1) * pixels] = [bright] * pixels
    return data


def build(out_dir: Path) -> Path:
    """Write classifier.pt into `out_dir` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "classifier.pt"
    torch.jit.script(ColourClassifier().eval()).save(str(path))
    return path


if __name__ == "__main__":
    target = build(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("build/classifier"))
    print(f"wrote {target}")  # noqa: T201
