"""`python -m fermion.cli`: the same as the `fermion` command."""

from __future__ import annotations

from fermion.cli.app import main

main()
