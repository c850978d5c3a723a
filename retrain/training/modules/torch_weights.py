"""Read PyTorch's legacy (pre-1.6, non-zip) checkpoint format with numpy alone.

The bundled backbone's weights ship as such a file. Unpickling it with plain ``pickle`` would let the file run any
code it names, so the unpickler below resolves only the handful of globals a state dict needs and refuses the rest.
Every storage must hold the bytes it claims and every tensor must lie inside its storage before any view is made:
a crafted size, stride or offset would otherwise read past the buffer.
"""

from __future__ import annotations

import os
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
# numpy 1's limit on an array's dimensions (numpy 2 allows 64); no state-dict tensor comes near it.
MAX_DIMENSIONS = 32

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafeCheckpointError(ValueError):
    """The checkpoint names a global outside the allow-list, is not in the legacy format, or is inconsistent."""


def _is_count(value: object) -> bool:
    """A non-negative Python int (not a bool, not a float): the only valid size, stride, offset or element count."""
    return type(value) is int and value >= 0


class _Unbuildable:
    """Refuses pickle's BUILD, which would rewrite the object's fields after the checks that made it."""

    def __setstate__(self, state: object) -> None:
        raise UnsafeCheckpointError("the checkpoint rewrites a tensor, storage or storage type after building it")


@dataclass
class _StorageRef(_Unbuildable):
    dtype: type
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef(_Unbuildable):
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def to_numpy(self) -> np.ndarray:
        """A copy of the tensor's elements, once the view is known to lie inside the storage's data.

        Checked here, where the view is made, whatever built this reference: a negative offset or stride would read
        before the data (``data[-1:]`` starts at its end), a large one past it.
        """
        data = self.storage.data if isinstance(self.storage, _StorageRef) else None
        if not isinstance(data, np.ndarray):
            raise UnsafeCheckpointError("a tensor refers to a storage the checkpoint does not hold")
        _check_counts(self.offset, self.size, self.stride)
        elements = int(np.prod(self.size, dtype=object))
        if not elements:  # reads nothing, whatever its offset and strides
            try:
                return np.empty(self.size, data.dtype)
            except ValueError as error:  # e.g. (0, 2**62): more than numpy can index
                raise UnsafeCheckpointError(f"an empty tensor of size {self.size}: {error}") from None
        # A dimension of one element never steps, so its stride does not count (and may be any size).
        strides = tuple(s if n > 1 else 0 for n, s in zip(self.size, self.stride, strict=True))
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, strides, strict=True))
        if last >= len(data) or elements > len(data):
            raise UnsafeCheckpointError(
                f"a tensor of size {self.size}, stride {self.stride} at offset {self.offset} lies outside its "
                f"storage of {len(data)} elements"
            )
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :], shape=self.size, strides=tuple(s * itemsize for s in strides)
        )
        return np.array(view, copy=True)


def _check_counts(offset: object, size: object, stride: object) -> None:
    """Sizes, strides and offset are non-negative ints, one stride per dimension, no more dimensions than numpy has."""
    if not (isinstance(size, tuple | list) and isinstance(stride, tuple | list) and len(size) == len(stride)):
        raise UnsafeCheckpointError("a tensor's size and stride are not sequences of one length")
    if len(size) > MAX_DIMENSIONS:
        raise UnsafeCheckpointError(f"a tensor has {len(size)} dimensions, more than {MAX_DIMENSIONS}")
    if not all(_is_count(value) for value in (offset, *size, *stride)):
        raise UnsafeCheckpointError(f"a tensor has a negative or non-integer size {size}, stride {stride} or offset")


class _StorageType(_Unbuildable):
    def __init__(self, name: str) -> None:
        self.dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor_v2(  # noqa: PLR0913 (the checkpoint format calls it with these arguments)
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride) -> _TensorRef:
    """A tensor of counts only: sizes, strides and offset must be non-negative ints, one stride per dimension."""
    if not isinstance(storage, _StorageRef):
        raise UnsafeCheckpointError(f"a tensor is built on a {type(storage).__name__}, not a storage")
    _check_counts(storage_offset, size, stride)
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, _StorageRef]) -> None:
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_tensor":
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeCheckpointError(f"checkpoint refers to {module}.{name}, which is not allowed in a state dict")

    def persistent_load(self, saved_id):
        if not (isinstance(saved_id, tuple) and len(saved_id) == 6 and saved_id[0] == "storage"):
            raise UnsafeCheckpointError(f"unexpected persistent object {saved_id!r:.80} in checkpoint")
        _kind, *data = saved_id
        storage_type, key, _location, numel, view_metadata = data
        if view_metadata is not None:
            raise UnsafeCheckpointError("storage views are not supported")
        if not (isinstance(storage_type, _StorageType) and isinstance(key, str) and _is_count(numel)):
            raise UnsafeCheckpointError("malformed storage reference in checkpoint")
        if key not in self._storages:
            self._storages[key] = _StorageRef(storage_type.dtype, numel)
        elif (self._storages[key].dtype, self._storages[key].numel) != (storage_type.dtype, numel):
            raise UnsafeCheckpointError(f"storage {key} is referred to with two different types or sizes")
        return self._storages[key]


def _safe_load(file) -> object:
    return _RestrictedUnpickler(file, {}).load()


def _read_storages(file, storages: dict[str, _StorageRef], keys: object, *, file_size: int) -> None:
    """Each storage's data, in the order the checkpoint lists them; each must hold exactly the elements it declared."""
    if not (isinstance(keys, list) and all(isinstance(key, str) for key in keys) and sorted(keys) == sorted(storages)):
        raise UnsafeCheckpointError("the checkpoint's storage list does not match the storages its tensors use")
    for key in keys:
        ref = storages[key]
        header = file.read(8)
        if len(header) != 8:
            raise UnsafeCheckpointError(f"the checkpoint ends before storage {key}")
        (numel,) = struct.unpack("<q", header)
        size = numel * np.dtype(ref.dtype).itemsize
        if numel != ref.numel or size > file_size - file.tell():
            raise UnsafeCheckpointError(
                f"storage {key} holds {numel} elements where {ref.numel} were declared, or ends past the file"
            )
        ref.data = np.frombuffer(file.read(size), dtype=ref.dtype)


def load_legacy_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Return the checkpoint's tensors as numpy arrays, keyed by their state-dict names."""
    try:
        state = _read_checkpoint(path)
        return {name: value.to_numpy() for name, value in state.items() if isinstance(value, _TensorRef)}
    except UnsafeCheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError, KeyError) as error:
        # A crafted pickle fails inside the unpickler in many ways; each means the same: not a checkpoint to trust.
        raise UnsafeCheckpointError(f"{path} is not a readable checkpoint ({type(error).__name__}: {error})") from None


def _read_checkpoint(path: Path) -> dict:
    """The state dict, its tensors still references to storages, every storage's data read."""
    storages: dict[str, _StorageRef] = {}
    with open(path, "rb") as f:
        if _safe_load(f) != _LEGACY_MAGIC:
            raise UnsafeCheckpointError(f"{path} is not a legacy PyTorch checkpoint")
        if _safe_load(f) != _LEGACY_PROTOCOL:
            raise UnsafeCheckpointError(f"{path} uses an unknown legacy protocol version")
        _safe_load(f)  # system info: endianness and type sizes; the data is little-endian on every known writer
        state = _RestrictedUnpickler(f, storages).load()
        _read_storages(f, storages, _safe_load(f), file_size=os.fstat(f.fileno()).st_size)
    if not isinstance(state, dict):
        raise UnsafeCheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state
