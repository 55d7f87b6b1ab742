"""Runtime images: the image catalog, the build-context renderer and the serving runtime."""

from __future__ import annotations

__all__: list[str] = []
