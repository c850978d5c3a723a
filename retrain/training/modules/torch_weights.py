"""Read PyTorch's legacy (pre-1.6, non-zip) checkpoint format with numpy alone.

The bundled backbone's weights ship as such a file. Unpickling it with plain ``pickle`` would let the file run any
code it names, so the unpickler below resolves only the handful of globals a state dict needs and refuses the rest.
"""

from __future__ import annotations

import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

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
    """The checkpoint names a global outside the allow-list, or is not in the legacy format."""


@dataclass
class _StorageRef:
    dtype: type
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def to_numpy(self) -> np.ndarray:
        assert self.storage.data is not None
        flat = self.storage.data[self.offset :]
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(flat, shape=self.size, strides=tuple(s * itemsize for s in self.stride))
        return np.array(view, copy=True)


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor_v2(  # noqa: PLR0913 (the checkpoint format calls it with these arguments)
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_tensor(storage, storage_offset, size, stride):
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
        kind, *data = saved_id
        if kind != "storage":
            raise UnsafeCheckpointError(f"unexpected persistent object {kind!r} in checkpoint")
        storage_type, key, _location, numel, view_metadata = data
        if view_metadata is not None:
            raise UnsafeCheckpointError("storage views are not supported")
        if key not in self._storages:
            self._storages[key] = _StorageRef(storage_type.dtype, numel)
        return self._storages[key]


def _safe_load(file) -> object:
    return _RestrictedUnpickler(file, {}).load()


def load_legacy_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Return the checkpoint's tensors as numpy arrays, keyed by their state-dict names."""
    storages: dict[str, _StorageRef] = {}
    with open(path, "rb") as f:
        if _safe_load(f) != _LEGACY_MAGIC:
            raise UnsafeCheckpointError(f"{path} is not a legacy PyTorch checkpoint")
        if _safe_load(f) != _LEGACY_PROTOCOL:
            raise UnsafeCheckpointError(f"{path} uses an unknown legacy protocol version")
        _safe_load(f)  # system info: endianness and type sizes; the data is little-endian on every known writer
        state = _RestrictedUnpickler(f, storages).load()
        storage_keys = _safe_load(f)
        for key in storage_keys:
            ref = storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            ref.data = np.frombuffer(f.read(numel * np.dtype(ref.dtype).itemsize), dtype=ref.dtype)
    if not isinstance(state, dict):
        raise UnsafeCheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    return {name: value.to_numpy() for name, value in state.items() if isinstance(value, _TensorRef)}
