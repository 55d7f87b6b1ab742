"""Fermion's errors: one base class, and subclasses that build their own message.

Every error names the bad value and says how to fix it. The CLI prints the message and exits 1,
so a user never sees a traceback for bad input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class FermionError(Exception):
    """Base class of every error fermion raises on purpose."""


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong in an environment file: where, what was found, and what is allowed."""

    path: str
    problem: str
    value: str | None = None
    fix: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        """One line: where, what was found, and the fix."""
        where = self.path if self.path else "(top level)"
        if self.line is not None:
            where += f" (line {self.line})"
        line = f"{where}: {self.problem}"
        if self.value is not None:
            line += f" (got {self.value})"
        if self.fix:
            line += f". {self.fix}"
        return line


class EnvironmentSpecError(FermionError):
    """The `fermion:environment` object in a stack file is not a valid environment."""

    def __init__(self, source: str, problems: Sequence[SpecProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"{source}: {count} {noun} in the environment"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class EnvironmentNotFoundError(FermionError):
    """No `Pulumi.<env>.yaml` for the requested environment."""

    def __init__(self, env: str, stacks_dir: Path, available: Sequence[str]) -> None:
        self.env = env
        self.stacks_dir = stacks_dir
        self.available = tuple(available)
        if self.available:
            known = ", ".join(self.available)
            hint = f"Known environments: {known}."
        else:
            hint = "That folder holds no Pulumi.<env>.yaml files."
        super().__init__(
            f"no environment {env!r}: {stacks_dir / f'Pulumi.{env}.yaml'} does not exist. {hint} "
            f"Create the file, or pass --stacks-dir to point at another folder."
        )


class StackFileError(FermionError):
    """A stack file that cannot be read as YAML, or lacks the environment key."""

    def __init__(self, path: Path, problem: str, fix: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}. {fix}")


class ShapeCatalogError(FermionError):
    """The shape catalog data file is malformed."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        super().__init__(f"{source}: {problem}. Fix the catalog entry, then run `fermion shapes`.")


class UnknownShapeError(FermionError):
    """A shape name that the catalog does not hold."""

    def __init__(self, name: str, known: Sequence[str], suggestion: str | None = None) -> None:
        self.name = name
        hint = f" Did you mean {suggestion!r}?" if suggestion else ""
        super().__init__(
            f"unknown shape {name!r}.{hint} Run `fermion shapes` to list them; "
            f"known shapes: {', '.join(known)}."
        )


class UnknownGpuError(FermionError):
    """A GPU filter that matches no shape in the catalog."""

    def __init__(self, query: str, known: Sequence[str]) -> None:
        self.query = query
        super().__init__(
            f"no shape has a GPU called {query!r}. Use one of: {', '.join(known)} "
            "(a family such as a100 or the model name such as A10G)."
        )
