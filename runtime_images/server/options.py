"""The server's command-line options, defined once.

The image's entrypoint (`python -m server`) builds its argparse parser from `OPTIONS`, and
`fermion serve` builds its typer options from the same table, so both offer the same flags with
the same help. Each option sets one field of `ModelConfig` or `ServerConfig` (the option's
`field`); an option left out parses as None, which leaves that field as serving.json or the
defaults have it.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from .config import FORMATS, PRECISIONS, ModelConfig, ServerConfig

OptionType = type[str] | type[int] | type[float] | type[bool] | type[Path]
LOG_LEVELS = ("debug", "info", "warning", "error")

_MODEL_FIELDS = {f.name: f for f in fields(ModelConfig)}
_SERVER_FIELDS = {f.name: f for f in fields(ServerConfig)}


@dataclass(frozen=True, slots=True)
class ServerOption:
    """One command-line option: its flag, the config field it sets, its type and its help.

    A `bool` option is a flag; a `negatable` one also has its negative, as --predict-thread has
    --no-predict-thread. A `repeatable` one may be given several times and parses as a list.
    The help ends with the default: the config field's own, unless `default_text` says it
    better.
    """

    flag: str
    field: str
    help: str
    type: OptionType = str
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    repeatable: bool = False
    negatable: bool = False
    default_text: str | None = None

    @property
    def scope(self) -> str:
        """Whether the option sets a ModelConfig field ("model") or a server setting."""
        return "model" if self.field in _MODEL_FIELDS else "server"

    @property
    def config_default(self) -> object:
        """The default of the field this option sets, or None where it has none."""
        found = _MODEL_FIELDS.get(self.field) or _SERVER_FIELDS.get(self.field)
        if found is None or found.default is MISSING:
            return None
        return found.default

    def help_text(self, default: object = None) -> str:
        """The help, ending with `default` when given, else with the config's default."""
        if default is not None:
            shown = _shown(default)
        elif self.default_text is not None:
            shown = self.default_text
        else:
            shown = _shown(self.config_default)
        return f"{self.help} Default: {shown}." if shown else self.help


def _shown(value: object) -> str:
    if value is None or isinstance(value, bool) or value == ():
        return ""  # flags say what they do, and their default is not to; lists start empty
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


OPTIONS: tuple[ServerOption, ...] = (
    # The model
    ServerOption(
        "--name", "name", "Model name in URLs.", default_text="from the model's file name"
    ),
    ServerOption("--model-version", "version", "Model version in URLs."),
    ServerOption(
        "--handler",
        "handler",
        "A handler class with load, preprocess, predict and postprocess hooks.",
        metavar="FILE.py:CLASS",
    ),
    ServerOption(
        "--format", "format", "Model format; a --handler implies handler.", choices=FORMATS
    ),
    ServerOption(
        "--input",
        "inputs",
        "An input tensor, e.g. input__0:FP32:-1,256; repeat for more. TorchScript needs it; "
        "torch.export files and handlers declare their own.",
        metavar="NAME:DTYPE:SHAPE",
        repeatable=True,
    ),
    ServerOption("--max-batch-size", "max_batch_size", "Samples per batch.", int),
    ServerOption("--max-delay-ms", "max_delay_ms", "Longest wait to fill a batch, in ms.", float),
    ServerOption("--max-queue", "max_queue", "Queued requests before 429 answers.", int),
    ServerOption("--timeout-s", "timeout_s", "Per-request time limit; 504 after it.", float),
    ServerOption("--device", "device", "auto (CUDA when present), cpu, cuda or cuda:N."),
    ServerOption("--precision", "precision", "Precision the model runs at.", choices=PRECISIONS),
    ServerOption("--compile", "compile", "torch.compile the model.", bool),
    ServerOption(
        "--predict-thread",
        "predict_thread",
        "Run the model on a thread of its own.",
        bool,
        negatable=True,
        default_text="on CUDA only",
    ),
    # The server
    ServerOption("--host", "host", "Address to listen on."),
    ServerOption("--port", "port", "Port to listen on.", int),
    ServerOption("--workers", "workers", "Server processes sharing the port.", int),
    ServerOption(
        "--max-request-bytes",
        "max_request_bytes",
        "Largest request body; larger ones get 413.",
        int,
        default_text="64 MiB",
    ),
    ServerOption(
        "--grace-period-s",
        "grace_period_s",
        "On SIGTERM, how long requests in flight may finish before the server exits.",
        float,
    ),
    ServerOption(
        "--drain-delay-s",
        "drain_delay_s",
        "On SIGTERM, how long the server, no longer ready, still takes new connections, so "
        "requests already on their way are served.",
        float,
    ),
    ServerOption(
        "--auth-token-file",
        "auth_token_file",
        "File of bearer tokens, one per line; $FERMION_AUTH_TOKENS adds comma-separated ones. "
        "With tokens, requests need one.",
        Path,
        metavar="FILE",
    ),
    ServerOption("--log-level", "log_level", "Log level.", choices=LOG_LEVELS),
    ServerOption("--access-log", "access_log", "Log every request.", bool),
)


def add_options(parser: argparse.ArgumentParser, options: Sequence[ServerOption] = OPTIONS) -> None:
    """Add `options` to an argparse parser; each parses into its field's name, None if absent."""
    for option in options:
        # argparse formats help with %, so a literal % must be doubled.
        kwargs: dict[str, Any] = {
            "dest": option.field,
            "default": None,
            "help": option.help_text().replace("%", "%%"),
        }
        if option.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction if option.negatable else "store_true"
        else:
            kwargs["type"] = option.type
            kwargs["action"] = "append" if option.repeatable else "store"
            if option.choices:
                kwargs["choices"] = option.choices
            if option.metavar is not None:
                kwargs["metavar"] = option.metavar
        parser.add_argument(option.flag, **kwargs)


def option_values(namespace: argparse.Namespace) -> dict[str, Any]:
    """The options' values from a namespace that `add_options` parsed, keyed by field."""
    return {option.field: getattr(namespace, option.field) for option in OPTIONS}


def to_argv(values: Mapping[str, Any], scope: str | None = None) -> list[str]:
    """Command-line arguments that hand `values` (keyed by field; None means not given) to the
    server, for the options of `scope` ("model" or "server"), or all of them."""
    argv: list[str] = []
    for option in OPTIONS:
        value = values.get(option.field)
        if value is None or (scope is not None and option.scope != scope):
            continue
        if option.type is bool:
            if value:
                argv.append(option.flag)
            elif option.negatable:
                argv.append(f"--no-{option.flag.removeprefix('--')}")
        elif option.repeatable:
            for item in value:
                argv += [option.flag, str(item)]
        else:
            argv += [option.flag, str(value)]
    return argv


__all__ = ["LOG_LEVELS", "OPTIONS", "ServerOption", "add_options", "option_values", "to_argv"]
