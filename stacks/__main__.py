"""Pulumi's entry point for the project (`main: stacks/` in Pulumi.yaml)."""

from __future__ import annotations

from fermion.stacks.program import main

main()
