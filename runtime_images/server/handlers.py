"""Model handlers: the hooks every request goes through, and the built-in one for torch models.

A handler is any class with these methods (LitServe's hook shape):
- `load(model_dir, device)` once at start, or `load(model_dir, device, dtype)` for a handler that
  applies the service's precision itself;
- `preprocess(inputs)` once per request, turning named input arrays into one item;
- `predict(batch)` once per batch, with the items of several requests, returning one per item;
- `postprocess(output)` once per request, returning named output tensors.
It declares `inputs` and may declare `outputs`, each a list of `NAME:DTYPE:SHAPE` strings,
`(name, datatype, shape)` tuples or TensorSpecs. `rows(item)` (how many samples an item holds,
for the batch size) and `warmup_inputs()` are optional.

A service's precision (fp16, bf16) reaches every handler: one whose `load` takes `dtype` gets it;
for any other, the server casts each torch module the handler holds as an attribute to that dtype,
and the floating-point tensors passed to it, and casts floating outputs back to the declared
datatypes.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from .config import ModelConfig, TensorSpec, parse_tensor_spec
from .errors import LoadError, describe
from .tensors import DATATYPES, datatype_of

log = logging.getLogger("fermion.server")

_SCRIPT_SUFFIXES = (".pt", ".ts", ".pth", ".jit", ".torchscript")
_EXPORT_SUFFIXES = (".pt2",)
# The dtype a precision computes in; int8 keeps float32 activations around int8 Linear weights.
DTYPES = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "int8": torch.float32,
}


@runtime_checkable
class Handler(Protocol):
    """What the server needs of a model."""

    def load(self, model_dir: Path, device: torch.device) -> None: ...

    def preprocess(self, inputs: dict[str, Any]) -> Any: ...

    def predict(self, batch: list[Any]) -> list[Any]: ...

    def postprocess(self, output: Any) -> dict[str, Any]: ...


def tensor_specs(declared: Iterable[Any], where: str) -> tuple[TensorSpec, ...]:
    """Normalise a handler's declared tensors to TensorSpecs."""
    specs = []
    for item in declared:
        if isinstance(item, TensorSpec):
            specs.append(item)
        elif isinstance(item, str):
            specs.append(parse_tensor_spec(item))
        elif isinstance(item, tuple | list) and len(item) == 3:
            name, dtype, shape = item
            specs.append(parse_tensor_spec(f"{name}:{dtype}:{','.join(str(d) for d in shape)}"))
        else:
            raise LoadError(f"{where}: cannot read tensor {item!r}; write NAME:DTYPE:SHAPE")
    return tuple(specs)


@dataclass(frozen=True)
class _Rows:
    """A torch model's item: its input tensors in order, and how many samples they hold."""

    tensors: tuple[torch.Tensor, ...]
    rows: int


class TorchModelHandler:
    """Serves a TorchScript archive or a torch.export program (`.pt2`).

    Requests that arrive together are concatenated along dim 0, run once, and split back.
    Inputs and outputs follow Triton's PyTorch naming: input__0, output__0, ...
    """

    def __init__(self, path: Path, config: ModelConfig) -> None:
        self.path = path
        self.config = config
        self.inputs: tuple[TensorSpec, ...] = config.inputs
        self.outputs: tuple[TensorSpec, ...] = ()
        self.device = torch.device("cpu")
        self._module: Any = None
        dtype = DTYPES[config.precision]
        self._cast: torch.dtype | None = None if dtype == torch.float32 else dtype

    def load(self, model_dir: Path, device: torch.device) -> None:
        self.device = device
        kind = self.config.format
        if kind == "auto":
            kind = "export" if self.path.suffix in _EXPORT_SUFFIXES else "torchscript"
        if kind == "export":
            self._module = self._load_export()
        else:
            self._module = self._load_script()
        if self._cast is not None:
            self._module = self._module.to(self._cast)
        if self.config.precision == "int8":
            if kind == "export":
                raise LoadError(
                    f"{self.path}: precision int8 quantizes torch.nn.Linear layers, and a "
                    "torch.export program has none left (they are flattened into aten calls); "
                    "save the model with torch.jit.script, or serve it through a handler, to "
                    "run it in int8, or pick fp32, fp16 or bf16"
                )
            self._module = quantize_script(self._module, device, str(self.path))
        if self.config.compile:
            if kind != "export":
                # torch.compile raises on a TorchScript module at its first call.
                raise LoadError(
                    f"{self.path}: compile (torch.compile) does not take TorchScript modules; "
                    "save the model with torch.export.save to a .pt2 file to compile it, or "
                    "leave compile off"
                )
            self._module = torch.compile(self._module)
        if not self.inputs:
            raise LoadError(
                f"{self.path}: a TorchScript archive carries no input signature; give the "
                "inputs, e.g. --input input__0:FP32:-1,256 (or `inputs:` in the service spec)"
            )

    def _load_script(self) -> Any:
        try:
            module = torch.jit.load(str(self.path), map_location=self.device)  # type: ignore[no-untyped-call]
        except (RuntimeError, ValueError) as exc:
            raise LoadError(
                f"{self.path} is not a TorchScript archive ({describe(exc)}). Save the model with "
                "torch.jit.script(model).save(path), or torch.export.save(...) to a .pt2 file"
            ) from None
        module.eval()
        return module

    def _load_export(self) -> Any:
        try:
            program = torch.export.load(str(self.path))
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            raise LoadError(
                f"{self.path} is not a torch.export archive ({describe(exc)}). Save it with "
                "torch.export.save(torch.export.export(model, args), path)"
            ) from None
        if not self.inputs:
            self.inputs = _export_signature(program)
        return program.module().to(self.device)

    def rows(self, item: _Rows) -> int:
        return item.rows

    def preprocess(self, inputs: dict[str, Any]) -> _Rows:
        tensors = []
        for spec in self.inputs:
            value = inputs[spec.name]
            tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(value)
            if self._cast is not None and tensor.is_floating_point():
                tensor = tensor.to(self._cast)
            tensors.append(tensor)
        rows = int(tensors[0].shape[0]) if tensors[0].dim() > 0 else 1
        return _Rows(tuple(tensors), rows)

    def predict(self, batch: list[_Rows]) -> list[tuple[torch.Tensor | np.ndarray[Any, Any], ...]]:
        if len(batch) == 1:
            args = [t.to(self.device, non_blocking=True) for t in batch[0].tensors]
        else:
            args = [
                torch.cat([item.tensors[i] for item in batch]).to(self.device, non_blocking=True)
                for i in range(len(self.inputs))
            ]
        with torch.inference_mode():
            result = self._module(*args)
        outputs = tuple(_host_array(o) for o in _as_tuple(result))
        if len(batch) == 1:
            return [outputs]
        # Each request's rows are views of the batch's one array: slicing a numpy array costs a
        # fraction of torch.split and a per-request tensor-to-numpy conversion.
        answers: list[tuple[torch.Tensor | np.ndarray[Any, Any], ...]] = []
        start = 0
        for item in batch:
            stop = start + item.rows
            answers.append(tuple(o[start:stop] for o in outputs))
            start = stop
        return answers

    def postprocess(
        self, output: tuple[torch.Tensor | np.ndarray[Any, Any], ...]
    ) -> dict[str, torch.Tensor | np.ndarray[Any, Any]]:
        return {f"output__{i}": tensor for i, tensor in enumerate(output)}

    def describe_outputs(self, sample: dict[str, Any]) -> None:
        """Record output names, datatypes and shapes from a warm-up result."""
        self.outputs = tuple(
            TensorSpec(name, datatype_of(value).name, (-1, *tuple(value.shape[1:])))
            for name, value in sample.items()
        )


def load_handler(
    handler: Any,
    model_dir: Path,
    device: torch.device,
    dtype: torch.dtype,
    quantize: bool = False,
) -> None:
    """Call the handler's `load`, with the dtype when it takes one; else cast its modules.

    With `quantize` (precision int8), a handler's modules are then quantized by
    `quantize_modules`; a TorchModelHandler quantizes its own.
    """
    if "dtype" in inspect.signature(handler.load).parameters:
        handler.load(model_dir, device, dtype=dtype)
    else:
        handler.load(model_dir, device)
        if dtype != torch.float32 and not isinstance(handler, TorchModelHandler):
            cast_modules(handler, dtype)
    if quantize and not isinstance(handler, TorchModelHandler):
        quantize_modules(handler, device)


def _int8_device(device: torch.device, what: str) -> None:
    if device.type != "cpu":
        raise LoadError(
            f"{what}: precision int8 is dynamic quantization, which torch runs on the CPU only, "
            f"not on {device}; serve it with device cpu, or pick fp16 or bf16 for a GPU"
        )


def quantize_script(module: Any, device: torch.device, what: str) -> Any:
    """A TorchScript module with its Linear layers dynamically quantized to int8."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic_jit

    _int8_device(device, what)
    quantized = quantize_dynamic_jit(module, {"": per_channel_dynamic_qconfig})  # type: ignore[no-untyped-call]
    graph = str(quantized.inlined_graph)  # the submodules' graphs too
    if "quantized::linear_dynamic" not in graph:
        raise LoadError(
            f"{what}: precision int8 quantizes torch.nn.Linear layers (and F.linear calls), and "
            "this TorchScript module has none; pick fp32, fp16 or bf16"
        )
    return quantized


def quantize_modules(handler: Any, device: torch.device) -> list[str]:
    """Quantize the Linear layers of each torch module the handler holds to int8 (dynamic
    quantization: int8 weights, activations quantized per batch); the attributes changed.
    LoadError when none holds a Linear layer."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    name_of = type(handler).__name__
    _int8_device(device, name_of)
    done = []
    for name, value in vars(handler).items() if hasattr(handler, "__dict__") else ():
        if isinstance(value, torch.jit.ScriptModule):
            setattr(handler, name, quantize_script(value, device, f"{name_of}.{name}"))
            done.append(name)
        elif isinstance(value, torch.nn.Module) and any(
            isinstance(m, torch.nn.Linear) for m in value.modules()
        ):
            # quantize_dynamic swaps a module's children, never the module itself: a Linear
            # held directly goes in a container for the swap.
            holder = torch.nn.Sequential(value)
            # Weights per output channel: one scale per row keeps small rows precise.
            spec = {torch.nn.Linear: per_channel_dynamic_qconfig}
            # Activations stay in torch's 7 bits on x86 (fbgemm's reduce_range): with all 8, the
            # AVX2 kernel's 16-bit sums saturate and answers go wrong.
            quantize_dynamic(holder, spec, dtype=torch.qint8, inplace=True)  # type: ignore[no-untyped-call]
            setattr(handler, name, holder[0])
            done.append(name)
    if not done:
        raise LoadError(
            f"{name_of}: precision int8 quantizes the torch.nn.Linear layers of the modules a "
            "handler holds as attributes, and it holds none; keep the model in an attribute "
            "(self.model = ...), or pick fp32, fp16 or bf16"
        )
    return done


def cast_modules(handler: Any, dtype: torch.dtype) -> list[str]:
    """Cast each torch module the handler holds to `dtype`, with the floating-point tensors
    passed to it; the names of the attributes cast."""
    cast = []
    for name, value in vars(handler).items() if hasattr(handler, "__dict__") else ():
        if not isinstance(value, torch.nn.Module):
            continue
        if isinstance(value, torch.jit.ScriptModule):  # takes no hooks to cast its inputs
            log.warning(
                "%s.%s is a TorchScript module, which stays in its own precision; take `dtype` "
                "in load() to cast it there",
                type(handler).__name__,
                name,
            )
            continue
        value.to(dtype)
        value.register_forward_pre_hook(_input_caster(dtype), with_kwargs=True)
        cast.append(name)
    return cast


def _input_caster(dtype: torch.dtype) -> Callable[..., tuple[Any, dict[str, Any]]]:
    def cast(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.to(dtype)
        return value

    def hook(
        module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}

    return hook


def _host_array(output: torch.Tensor) -> torch.Tensor | np.ndarray[Any, Any]:
    """An output on the CPU, as a numpy array that shares its memory; BF16, which numpy has no
    type for, stays a tensor."""
    tensor = output.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor
    return tensor.numpy()


def _as_tuple(result: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(result, torch.Tensor):
        return (result,)
    if isinstance(result, tuple | list) and all(isinstance(r, torch.Tensor) for r in result):
        return tuple(result)
    raise TypeError(
        f"the model returned {type(result).__name__}; a served torch model must return a tensor "
        "or a tuple of tensors"
    )


def _export_signature(program: Any) -> tuple[TensorSpec, ...]:
    """Input specs from a torch.export program's example inputs; dim 0 is the batch."""
    args, _kwargs = program.example_inputs
    specs = []
    for i, arg in enumerate(args):
        if not isinstance(arg, torch.Tensor):
            raise LoadError(f"input {i} of the exported program is not a tensor")
        dtype = datatype_of(arg).name
        shape = (-1, *(int(d) for d in arg.shape[1:]))
        specs.append(TensorSpec(f"input__{i}", dtype, shape))
    return tuple(specs)


def load_handler_class(reference: str, model_dir: Path) -> type[Any]:
    """The class a `FILE.py:CLASS` or `MODULE:CLASS` reference names."""
    target, _, class_name = reference.rpartition(":")
    if not target or not class_name:
        raise LoadError(f"handler {reference!r}: write it as FILE.py:CLASS or MODULE:CLASS")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_absolute() and not path.exists():
            path = model_dir / target
        if not path.is_file():
            raise LoadError(f"handler file {target} not found (looked in {model_dir} too)")
        module_name = f"fermion_handler_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise LoadError(f"handler file {path} cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        sys.path.insert(0, str(path.parent))
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise LoadError(f"handler file {path} failed to import: {describe(exc)}") from exc
        finally:
            sys.path.remove(str(path.parent))
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise LoadError(f"handler module {target!r} cannot be imported: {exc}") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise LoadError(f"handler {reference!r}: {target} has no class {class_name!r}")
    missing = [m for m in ("load", "preprocess", "predict", "postprocess") if not hasattr(cls, m)]
    if missing:
        raise LoadError(f"handler {class_name} lacks the methods {', '.join(missing)}")
    return cls


def resolve_model(config: ModelConfig) -> tuple[Any, Path]:
    """The handler for a model config, and the folder or file its load() receives."""
    path = Path(config.path)
    if not path.exists():
        raise LoadError(f"model path {path} does not exist")
    if config.handler is not None or config.format == "handler":
        if config.handler is None:
            raise LoadError("format handler needs a handler reference, e.g. handler.py:MyHandler")
        model_dir = path if path.is_dir() else path.parent
        cls = load_handler_class(config.handler, model_dir)
        return cls(), path
    if path.is_dir():
        if (path / "handler.py").is_file() and config.format in ("auto", "handler"):
            cls = load_handler_class(f"handler.py:{_handler_class_name(path / 'handler.py')}", path)
            return cls(), path
        path = _single_model_file(path)
    return TorchModelHandler(path, config), path


def _handler_class_name(file: Path) -> str:
    """The one class in a handler file that has the four hooks."""
    import ast

    tree = ast.parse(file.read_text(encoding="utf-8"))
    hooks = {"load", "preprocess", "predict", "postprocess"}
    found = [
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and hooks <= {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
    ]
    if len(found) != 1:
        raise LoadError(
            f"{file} holds {len(found)} handler classes ({', '.join(found) or 'none'}); name "
            "one with --handler handler.py:CLASS"
        )
    return found[0]


def _single_model_file(folder: Path) -> Path:
    candidates = sorted(
        p for p in folder.iterdir() if p.suffix in (*_SCRIPT_SUFFIXES, *_EXPORT_SUFFIXES)
    )
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise LoadError(
            f"{folder} must hold exactly one model file (.pt, .ts, .pt2), found: {found}; "
            "name the file, or give a handler with --handler FILE.py:CLASS"
        )
    return candidates[0]


def declared_specs(handler: Any, attribute: str) -> tuple[TensorSpec, ...]:
    declared: Sequence[Any] = getattr(handler, attribute, ()) or ()
    return tensor_specs(declared, f"{type(handler).__name__}.{attribute}")


def synthetic_inputs(specs: Sequence[TensorSpec], rows: int) -> dict[str, Any]:
    """Inputs of the declared shapes (variable dims 1, dim 0 `rows`) for warm-up."""
    inputs: dict[str, Any] = {}
    for spec in specs:
        shape = tuple(rows if i == 0 else max(d, 1) for i, d in enumerate(spec.shape)) or (rows,)
        dtype = DATATYPES[spec.datatype]
        if spec.datatype == "BYTES":
            inputs[spec.name] = np.full(shape, b"warm up", dtype=object)
        elif dtype.numpy is None:
            inputs[spec.name] = torch.zeros(shape, dtype=torch.bfloat16)
        else:
            inputs[spec.name] = np.zeros(shape, dtype=dtype.numpy)
    return inputs
