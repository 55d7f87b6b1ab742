"""The server's options, defined once: the entrypoint's parser, the one model-config builder,
and the defaults every part shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from fermion.runtime_images.render import render
from fermion.runtime_images.server.__main__ import build_parser, config_from_args
from fermion.runtime_images.server.config import (
    DEFAULT_GRACE_PERIOD_S,
    ConfigError,
    ModelConfig,
    ServerConfig,
    default_model_name,
    model_config_from_options,
)
from fermion.runtime_images.server.options import OPTIONS, to_argv


def _parse(*argv: str) -> ServerConfig:
    return config_from_args(build_parser().parse_args(list(argv)))


def test_every_option_is_a_flag_of_the_entrypoint() -> None:
    help_text = build_parser().format_help()
    for option in OPTIONS:
        assert option.flag in help_text, option.flag
    assert "--no-predict-thread" in help_text


def test_options_given_back_as_arguments_parse_to_the_same_config() -> None:
    argv = [
        "m.pt",
        "--name", "m", "--model-version", "3", "--input", "x:FP32:-1,4", "--input", "y:INT64:-1",
        "--max-batch-size", "4", "--max-delay-ms", "2.5", "--max-queue", "9", "--timeout-s", "7",
        "--device", "cpu", "--precision", "bf16", "--compile", "--no-predict-thread",
        "--host", "127.0.0.1", "--port", "9000", "--workers", "2", "--max-request-bytes", "4096",
        "--grace-period-s", "3", "--log-level", "debug", "--access-log",
    ]  # fmt: skip
    args = build_parser().parse_args(argv)
    values = {o.field: getattr(args, o.field) for o in OPTIONS}
    again = build_parser().parse_args(["m.pt", *to_argv(values)])
    assert {o.field: getattr(again, o.field) for o in OPTIONS} == values
    config = config_from_args(args)
    model = config.models[0]
    assert (model.version, model.max_queue, model.precision, model.predict_thread) == (
        "3", 9, "bf16", False
    )  # fmt: skip
    assert [t.name for t in model.inputs] == ["x", "y"]
    assert (config.port, config.max_request_bytes, config.access_log) == (9000, 4096, True)


def test_server_options_only_leave_the_model_alone() -> None:
    values = {"port": 1, "name": "m", "max_request_bytes": 5}
    assert to_argv(values, scope="server") == ["--port", "1", "--max-request-bytes", "5"]
    assert to_argv(values, scope="model") == ["--name", "m"]


def test_one_model_config_builder_and_one_default_name(tmp_path: Path) -> None:
    path = "models/My Model.v2.pt"
    assert default_model_name(path) == "My-Model.v2"
    built = model_config_from_options(path, {})
    assert built == ModelConfig(name="My-Model.v2", path=path)
    assert _parse(path).models[0] == built
    handled = model_config_from_options(path, {"handler": "h.py:H", "inputs": None})
    assert handled.format == "handler"
    with pytest.raises(ConfigError, match="give a model path"):
        model_config_from_options(None, {})


def test_flags_override_one_model_of_a_serving_json(tmp_path: Path) -> None:
    context = render("torch-cpu", ModelConfig(name="m", path="s3://b/m/"), tmp_path / "c")
    config = _parse("--config", str(context.path / "serving.json"), "--max-batch-size", "2")
    assert config.models[0].name == "m" and config.models[0].max_batch_size == 2
    assert config.host == "0.0.0.0"  # from serving.json


def test_one_grace_period_default() -> None:
    assert ServerConfig(models=(ModelConfig(name="m", path="p"),)).grace_period_s == (
        DEFAULT_GRACE_PERIOD_S
    )
    help_text = " ".join(build_parser().format_help().split())
    assert f"Default: {DEFAULT_GRACE_PERIOD_S:g}." in help_text
