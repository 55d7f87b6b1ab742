"""Serving configuration: what to serve and how. Plain Python, so anything may import it.

A runtime image carries a `serving.json` rendered from the service's spec; `fermion serve` and
the image's entrypoint read it, and command-line flags override single fields.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

# V2 datatypes the server can carry. BF16 travels only as binary (JSON has no bfloat16 numbers).
DATATYPES = (
    "BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES",
)  # fmt: skip
_TENSOR_SPEC = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_.]*):(?P<dtype>[A-Z0-9]+):(?P<shape>.+)$")
FORMATS = ("auto", "torchscript", "export", "handler")
# int8 is dynamic quantization: Linear layers' weights in int8, activations quantized per batch
# on the fly; CPU only.
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# How long a SIGTERM'd server drains before it exits. A pod's terminationGracePeriodSeconds must
# be at least this, or the kubelet kills the server mid-drain.
DEFAULT_GRACE_PERIOD_S = 30.0
# How long a SIGTERM'd server keeps accepting connections (not ready, but serving) before it
# closes its listener, so requests already on their way are served, not refused.
DEFAULT_DRAIN_DELAY_S = 1.0


class ConfigError(ValueError):
    """A serving setting that is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A named tensor with its V2 datatype and shape; -1 marks a variable dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __str__(self) -> str:
        """The `NAME:DTYPE:SHAPE` form that `parse_tensor_spec` reads."""
        return f"{self.name}:{self.datatype}:{','.join(str(d) for d in self.shape)}"


def parse_tensor_spec(text: str) -> TensorSpec:
    """Parse `NAME:DTYPE:SHAPE`, e.g. `input__0:FP32:-1,256`. Raises ConfigError."""
    match = _TENSOR_SPEC.match(text.strip())
    if match is None:
        raise ConfigError(
            f"tensor {text!r}: write a tensor as NAME:DTYPE:SHAPE, e.g. input__0:FP32:-1,256"
        )
    dtype = match.group("dtype")
    if dtype not in DATATYPES:
        raise ConfigError(
            f"tensor {text!r}: datatype {dtype!r} is not one of {', '.join(DATATYPES)}"
        )
    dims: list[int] = []
    for part in match.group("shape").split(","):
        try:
            dim = int(part.strip())
        except ValueError:
            raise ConfigError(
                f"tensor {text!r}: dimension {part!r} is not an integer; use -1 for a variable "
                "dimension"
            ) from None
        if dim < -1 or dim == 0:
            raise ConfigError(
                f"tensor {text!r}: dimension {dim} must be positive, or -1 for a variable dimension"
            )
        dims.append(dim)
    return TensorSpec(match.group("name"), dtype, tuple(dims))


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One model to serve."""

    name: str
    path: str
    version: str = "1"
    format: str = "auto"
    handler: str | None = None
    inputs: tuple[TensorSpec, ...] = ()
    max_batch_size: int = 8
    max_delay_ms: float = 5.0
    max_queue: int = 512
    timeout_s: float = 30.0
    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False
    predict_thread: bool | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", self.name):
            raise ConfigError(
                f"model name {self.name!r}: use letters, digits, '.', '_' and '-', beginning "
                "with a letter or digit"
            )
        if self.format not in FORMATS:
            raise ConfigError(f"model format {self.format!r} is not one of {', '.join(FORMATS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be at least 1, not {self.max_batch_size}")
        if self.max_delay_ms < 0:
            raise ConfigError(f"max_delay_ms must be 0 or more, not {self.max_delay_ms:g}")
        if self.max_queue < 1:
            raise ConfigError(f"max_queue must be at least 1, not {self.max_queue}")
        if not self.timeout_s > 0:
            raise ConfigError(f"timeout_s must be more than 0, not {self.timeout_s:g}")
        names = [t.name for t in self.inputs]
        if len(set(names)) != len(names):
            raise ConfigError(f"input names must be unique: {', '.join(names)}")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The server process: where it listens, its limits, and the models it serves."""

    models: tuple[ModelConfig, ...]
    host: str = "0.0.0.0"  # in a pod the server must listen beyond loopback
    port: int = 8080
    max_request_bytes: int = 64 * 1024 * 1024
    grace_period_s: float = DEFAULT_GRACE_PERIOD_S
    drain_delay_s: float = DEFAULT_DRAIN_DELAY_S
    auth_tokens: tuple[str, ...] = ()
    workers: int = 1
    log_level: str = "info"
    access_log: bool = False

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("no model to serve: give a model path")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port {self.port} is not between 1 and 65535")
        if self.max_request_bytes < 1024:
            raise ConfigError(
                f"max_request_bytes must be at least 1024, not {self.max_request_bytes}"
            )
        if self.grace_period_s < 0:
            raise ConfigError(f"grace_period_s must be 0 or more, not {self.grace_period_s:g}")
        if self.drain_delay_s < 0:
            raise ConfigError(f"drain_delay_s must be 0 or more, not {self.drain_delay_s:g}")
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, not {self.workers}")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ConfigError(f"model names must be unique: {', '.join(names)}")


def _model_from_mapping(data: Mapping[str, Any], source: str) -> ModelConfig:
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown model keys {unknown}; known keys: {sorted(known)}")
    values = dict(data)
    if "inputs" in values:
        values["inputs"] = tuple(parse_tensor_spec(str(t)) for t in values["inputs"])
    try:
        return ModelConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config_file(path: Path) -> ServerConfig:
    """Read a `serving.json` file, as rendered into runtime images."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ConfigError(f"{path}: expected an object with a `models` list")
    models = tuple(_model_from_mapping(m, str(path)) for m in data.pop("models"))
    known = {f.name for f in fields(ServerConfig)} - {"models"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown}; known keys: {sorted(known)}")
    if "auth_tokens" in data:
        data["auth_tokens"] = tuple(data["auth_tokens"])
    return ServerConfig(models=models, **data)


def tokens_from_environment(
    environ: Mapping[str, str] | None = None, token_file: Path | None = None
) -> tuple[str, ...]:
    """Bearer tokens from $FERMION_AUTH_TOKENS (comma-separated) and a file (one per line)."""
    env = os.environ if environ is None else environ
    tokens = [t.strip() for t in env.get("FERMION_AUTH_TOKENS", "").split(",") if t.strip()]
    file_name = token_file if token_file is not None else env.get("FERMION_AUTH_TOKEN_FILE")
    if file_name:
        try:
            text = Path(file_name).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"token file {file_name}: cannot be read ({exc.strerror})") from None
        tokens += [line.strip() for line in text.splitlines() if line.strip()]
    return tuple(tokens)


def default_model_name(path: str) -> str:
    """A model's name from its file or folder name: `classifier.pt` serves as `classifier`."""
    stem = Path(path.rstrip("/")).stem or "model"
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", stem).strip("-.") or "model"
    return name if name[0].isalnum() else f"m{name}"


_MODEL_FIELDS = frozenset(f.name for f in fields(ModelConfig))
_SERVER_FIELDS = frozenset(f.name for f in fields(ServerConfig)) - {"models"}


def model_config_from_options(
    path: str | None, options: Mapping[str, Any], base: ModelConfig | None = None
) -> ModelConfig:
    """A model's settings from command-line options, over `base` (a serving.json's model) or,
    without one, over the defaults for the model at `path`.

    `options` maps ModelConfig's field names to values; None leaves a setting as it is, and
    other keys are ignored. `inputs` are NAME:DTYPE:SHAPE texts. A handler without a format
    means the handler format. Raises ConfigError.
    """
    given = {k: v for k, v in options.items() if k in _MODEL_FIELDS and v is not None}
    if given.get("inputs"):
        given["inputs"] = tuple(parse_tensor_spec(str(text)) for text in given["inputs"])
    else:
        given.pop("inputs", None)
    if given.get("handler") is not None and "format" not in given:
        given["format"] = "handler"
    if path is not None:
        given["path"] = path
    if base is None:
        if path is None:
            raise ConfigError("give a model path, or --config serving.json")
        base = ModelConfig(name=default_model_name(path), path=path)
    return replace(base, **given)


def server_config_from_options(base: ServerConfig, options: Mapping[str, Any]) -> ServerConfig:
    """`base` with the server settings that `options` gives (keys are ServerConfig's field
    names; None leaves a setting as it is, and other keys are ignored). Raises ConfigError."""
    given = {k: v for k, v in options.items() if k in _SERVER_FIELDS and v is not None}
    if "auth_tokens" in given:
        given["auth_tokens"] = tuple(given["auth_tokens"])
    return replace(base, **given)


__all__ = [
    "DATATYPES",
    "DEFAULT_DRAIN_DELAY_S",
    "DEFAULT_GRACE_PERIOD_S",
    "ConfigError",
    "ModelConfig",
    "ServerConfig",
    "TensorSpec",
    "default_model_name",
    "load_config_file",
    "model_config_from_options",
    "parse_tensor_spec",
    "server_config_from_options",
    "tokens_from_environment",
]
