"""fermion's command line."""

from __future__ import annotations

from fermion.cli.app import app, main

__all__ = ["app", "main"]
