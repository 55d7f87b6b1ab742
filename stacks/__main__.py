"""Pulumi's entry point for the project (`main: stacks/` in Pulumi.yaml)."""

from __future__ import annotations

import sys

from pulumi.runtime.settings import get_monitor

if get_monitor() is None:
    # Run by hand, with no Pulumi engine to declare resources to.
    sys.exit(
        "error: stacks/__main__.py is fermion's Pulumi program and runs under the Pulumi engine: "
        "`fermion up ENV`, or `pulumi up` in this project with a stack selected. To see what it "
        "would declare, with no credentials or Pulumi CLI, run `fermion plan ENV`."
    )

from fermion.stacks.program import main

main()
