"""The CrossGuard entry point: `pulumi preview --policy-pack policies` runs this file, which
builds the `fermion` pack from the same rules `fermion plan` runs."""

from __future__ import annotations

from fermion.policies.pack import policy_pack

policy_pack()
