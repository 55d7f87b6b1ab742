from __future__ import annotations

import re

from pydantic import BaseModel

from fermion.environments import EnvironmentSpec

from ..conftest import REPO


def _fields(model: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(name)
        for candidate in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                names |= _fields(candidate)
    return names


def test_every_environment_key_is_documented() -> None:
    doc = (REPO / "docs" / "environment.md").read_text()
    missing = sorted(
        name for name in _fields(EnvironmentSpec) - {"name", "region"}
        if not re.search(rf"\b{re.escape(name)}\b", doc)
    )  # fmt: skip
    assert missing == []
