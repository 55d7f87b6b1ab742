"""Tensors on the wire: V2 datatypes, and their JSON and binary (Triton extension) forms.

Binary tensors are read without a copy: `numpy.frombuffer` over the request body, then
`torch.from_numpy` shares the same memory. BYTES tensors are numpy object arrays of `bytes`.
"""

from __future__ import annotations

import array as array_module
import struct
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from .errors import BadRequest

try:
    from simdjson import Array as LazyArray  # a JSON array simdjson has parsed but not read
except ImportError:

    class LazyArray:  # type: ignore[no-redef]
        """Never made: without simdjson every JSON array arrives as a list."""


Array = np.ndarray[Any, Any]


@dataclass(frozen=True, slots=True)
class Datatype:
    """A V2 datatype: its numpy and torch forms, and its width in bytes (0 for BYTES)."""

    name: str
    numpy: np.dtype[Any] | None
    torch: torch.dtype | None
    itemsize: int


def _dt(name: str, numpy: Any, torch_dtype: torch.dtype | None, itemsize: int) -> Datatype:
    return Datatype(name, None if numpy is None else np.dtype(numpy), torch_dtype, itemsize)


DATATYPES: dict[str, Datatype] = {
    d.name: d
    for d in (
        _dt("BOOL", np.bool_, torch.bool, 1),
        _dt("UINT8", np.uint8, torch.uint8, 1),
        _dt("INT8", np.int8, torch.int8, 1),
        _dt("INT16", np.int16, torch.int16, 2),
        _dt("INT32", np.int32, torch.int32, 4),
        _dt("INT64", np.int64, torch.int64, 8),
        _dt("FP16", np.float16, torch.float16, 2),
        _dt("FP32", np.float32, torch.float32, 4),
        _dt("FP64", np.float64, torch.float64, 8),
        _dt("BF16", None, torch.bfloat16, 2),
        _dt("BYTES", object, None, 0),
    )
}
_BY_TORCH = {d.torch: d for d in DATATYPES.values() if d.torch is not None}
_BY_NUMPY = {d.numpy: d for d in DATATYPES.values() if d.numpy is not None}
_LITTLE: Literal["<"] = "<"
_FLOATS = frozenset({"FP16", "FP32", "FP64"})
# array module type codes with the same layout as the V2 float datatypes (FP16 has none).
_ARRAY_CODES = {"FP32": "f", "FP64": "d"}


def datatype(name: object, where: str) -> Datatype:
    """The Datatype called `name`; 400 naming the allowed ones otherwise."""
    found = DATATYPES.get(name) if isinstance(name, str) else None
    if found is None:
        raise BadRequest(f"{where}: datatype {name!r} is not one of {', '.join(DATATYPES)}")
    return found


def datatype_of(value: torch.Tensor | Array) -> Datatype:
    """The V2 datatype of a tensor or array."""
    if isinstance(value, torch.Tensor):
        found = _BY_TORCH.get(value.dtype)
        if found is None:
            raise TypeError(f"torch dtype {value.dtype} has no V2 datatype")
        return found
    found = _BY_NUMPY.get(
        value.dtype.newbyteorder("=") if value.dtype.byteorder == ">" else value.dtype
    )
    if found is None:
        raise TypeError(f"numpy dtype {value.dtype} has no V2 datatype")
    return found


def element_count(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def from_json(data: object, dtype: Datatype, shape: tuple[int, ...], where: str) -> Array:
    """A V2 JSON `data` list (flat or nested, row-major) as an array of `shape`.

    `data` may also be a flat LazyArray (see protocol.py): float datatypes are read from it in
    C, with no Python float per element; anything else is read as the list orjson would give.
    """
    if isinstance(data, LazyArray):
        array = _lazy_floats(data, dtype)
        if array is not None:
            count = element_count(shape)
            if array.size != count:
                raise _count_mismatch(where, shape, count, array.size)
            return array.reshape(shape)
        data = data.as_list()
    if not isinstance(data, list):
        raise BadRequest(f"{where}: `data` must be a list, not {type(data).__name__}")
    count = element_count(shape)
    if dtype.name == "BYTES":
        flat = _flatten(data)
        if len(flat) != count:
            raise _count_mismatch(where, shape, count, len(flat))
        items = np.empty(count, dtype=object)
        for i, item in enumerate(flat):
            if isinstance(item, str):
                items[i] = item.encode("utf-8")
            elif isinstance(item, bytes):
                items[i] = item
            else:
                raise BadRequest(f"{where}: BYTES elements must be strings, not {item!r}")
        return items.reshape(shape)
    if dtype.numpy is None:
        raise BadRequest(f"{where}: {dtype.name} tensors travel only as binary data")
    try:
        if dtype.name in _FLOATS and data and not isinstance(data[0], list):
            # array() converts a flat list of numbers in C, faster than numpy's own path; FP32
            # goes straight to single precision ('f' turns out-of-range values into inf, as
            # numpy does), with no float64 copy in between.
            code = _ARRAY_CODES.get(dtype.name)
            if code is not None:
                array = np.frombuffer(array_module.array(code, data), dtype=dtype.numpy)
            else:
                array = np.frombuffer(array_module.array("d", data), dtype=np.float64)
                with np.errstate(over="ignore"):  # out of range becomes inf, as in numpy
                    array = array.astype(dtype.numpy)
        else:
            array = np.asarray(data, dtype=dtype.numpy)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadRequest(f"{where}: `data` is not a list of {dtype.name} values ({exc})") from None
    if array.size != count:
        raise _count_mismatch(where, shape, count, array.size)
    if dtype.name == "BOOL" and not all(isinstance(v, bool) for v in _flatten(data)):
        raise BadRequest(f"{where}: BOOL elements must be true or false")
    return array.reshape(shape)


def _lazy_floats(data: Any, dtype: Datatype) -> Array | None:
    """A flat float array read in C, or None when it is empty, another datatype, or holds
    something other than numbers (then the list path gives the same answer as before)."""
    if dtype.name not in _FLOATS or dtype.numpy is None or not len(data):
        return None
    try:
        doubles = np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64)
    except (TypeError, ValueError):  # true, false, null or strings among the numbers
        return None
    if dtype.name == "FP64":
        return doubles
    with np.errstate(over="ignore"):  # out of range becomes inf, as in numpy and array('f')
        return doubles.astype(dtype.numpy)


def from_binary(
    buffer: memoryview, dtype: Datatype, shape: tuple[int, ...], where: str
) -> Array | torch.Tensor:
    """A binary tensor (little-endian, row-major) over `buffer`, without a copy where possible."""
    count = element_count(shape)
    if dtype.name == "BYTES":
        return _bytes_from_binary(buffer, count, where).reshape(shape)
    if len(buffer) != count * dtype.itemsize:
        raise BadRequest(
            f"{where}: binary_data_size is {len(buffer)} bytes, but shape {list(shape)} of "
            f"{dtype.name} needs {count * dtype.itemsize}"
        )
    if dtype.numpy is None:  # BF16: numpy has no bfloat16, torch reads it directly
        raw = np.frombuffer(buffer, dtype=np.int16).reshape(shape)
        return torch.from_numpy(raw).view(torch.bfloat16)
    return np.frombuffer(buffer, dtype=dtype.numpy.newbyteorder(_LITTLE)).reshape(shape)


def _bytes_from_binary(buffer: memoryview, count: int, where: str) -> Array:
    items = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + 4 > len(buffer):
            raise BadRequest(f"{where}: BYTES data ends inside element {i} of {count}")
        (length,) = struct.unpack_from("<I", buffer, offset)
        offset += 4
        if offset + length > len(buffer):
            raise BadRequest(f"{where}: BYTES element {i} runs past the end of its data")
        items[i] = bytes(buffer[offset : offset + length])
        offset += length
    if offset != len(buffer):
        raise BadRequest(f"{where}: {len(buffer) - offset} bytes left over after {count} elements")
    return items


def to_numpy(value: torch.Tensor | Array) -> Array:
    """A C-contiguous array of a tensor's data (BF16 widened to FP32 for JSON)."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        return np.ascontiguousarray(tensor.numpy())
    return np.ascontiguousarray(value)


def to_json_data(value: torch.Tensor | Array) -> tuple[str, list[int], Any]:
    """Datatype, shape and a JSON-ready flat `data` for an output (orjson serialises arrays)."""
    array = to_numpy(value)
    dtype = datatype_of(array)
    if dtype.name == "BYTES":
        try:
            data: Any = [
                b.decode("utf-8") if isinstance(b, bytes) else str(b) for b in array.ravel()
            ]
        except UnicodeDecodeError:
            raise BadRequest(
                "a BYTES output is not UTF-8 text and cannot be sent as JSON; ask for it as "
                "binary data"
            ) from None
        return dtype.name, list(array.shape), data
    return dtype.name, list(array.shape), array.reshape(-1)


def to_binary(value: torch.Tensor | Array) -> tuple[str, list[int], bytes]:
    """Datatype, shape and raw little-endian bytes for an output sent as binary data."""
    if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16:
        tensor = value.detach().cpu().contiguous()
        return "BF16", list(tensor.shape), tensor.view(torch.int16).numpy().tobytes()
    array = to_numpy(value)
    dtype = datatype_of(array)
    if dtype.name == "BYTES":
        parts = []
        for item in array.ravel():
            raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts.append(struct.pack("<I", len(raw)))
            parts.append(raw)
        return dtype.name, list(array.shape), b"".join(parts)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder(_LITTLE))
    return dtype.name, list(array.shape), array.tobytes()


def _flatten(data: list[Any]) -> list[Any]:
    if not data or not isinstance(data[0], list):
        return data
    flat: list[Any] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    return flat


def _count_mismatch(where: str, shape: tuple[int, ...], expected: int, got: int) -> BadRequest:
    return BadRequest(
        f"{where}: shape {list(shape)} holds {expected} elements, but `data` has {got}"
    )
