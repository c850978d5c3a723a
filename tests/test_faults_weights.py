"""Crafted weight files: whatever offsets, sizes and strides a checkpoint declares, and however its pickle rewrites
them afterwards (REDUCE then BUILD), the reader returns the values numpy reads inside the storage or refuses the file.
It never reads outside the storage and never crashes the process."""

from __future__ import annotations

import json
import os
import pickle
import random
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retrain.training.modules.torch_weights import UnsafeCheckpointError, _StorageRef, _TensorRef
from tests.checkpoints import pickled_int, pickled_text, pickled_tuple

REPO = Path(__file__).resolve().parents[1]
READER = REPO / "retrain" / "training" / "modules" / "torch_weights.py"
# Offsets and strides a crafted file would use to reach far outside its data: a huge negative stride segfaulted.
FAR = 1 << 40
FUZZ_CASES = 400

# The reader file alone (no TensorFlow, so it starts in a fraction of a second), in a process of its own so a
# segfault fails the test instead of ending pytest; one JSON line per file: the values read, or the refusal.
LOAD_EACH = """
import importlib.util, json, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("torch_weights", sys.argv[1])
module = sys.modules["torch_weights"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
for path in sys.argv[2:]:
    try:
        tensor = module.load_legacy_state_dict(Path(path))["w"]
        print(json.dumps({"shape": list(tensor.shape), "values": tensor.ravel().tolist()}), flush=True)
    except module.UnsafeCheckpointError as error:
        print(json.dumps({"refused": str(error)}), flush=True)
    except Exception as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}), flush=True)
"""


def _load_each(paths: list[Path]) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", LOAD_EACH, str(READER), *map(str, paths)]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert completed.returncode == 0, f"the reader crashed (exit {completed.returncode}) after {completed.stdout}"
    return [json.loads(line) for line in completed.stdout.splitlines()]


# A legacy PyTorch checkpoint, pickle opcode by opcode


def _value(value: int | str | tuple) -> bytes:
    if isinstance(value, tuple):
        return pickled_tuple(*map(_value, value))
    return pickled_text(value) if isinstance(value, str) else pickled_int(value)


def _build(fields: dict, *, slots: bool = False) -> bytes:
    """BUILD with ``fields`` on the object on top of the stack: as its ``__dict__``, or as slot state."""
    state = b"}" + b"".join(pickled_text(name) + _value(value) + b"s" for name, value in fields.items())
    return (b"N" + state + b"\x86b") if slots else (state + b"b")


def _checkpoint(floats: int, offset: int, size: tuple, stride: tuple, rewrite: dict | None = None) -> bytes:
    """One tensor ``w`` over a float32 storage holding 0, 1, ... ``floats - 1``; ``rewrite`` maps "tensor", "slots",
    "storage" or "storage type" to fields a BUILD sets on that object after it is made."""
    rewrite = rewrite or {}
    storage_type = b"ctorch\nFloatStorage\n" + (_build(rewrite["storage type"]) if "storage type" in rewrite else b"")
    storage = (
        pickled_tuple(
            pickled_text("storage"), storage_type, pickled_text("0"), pickled_text("cpu"), pickled_int(floats), b"N"
        )
        + b"Q"
    )
    storage += _build(rewrite["storage"]) if "storage" in rewrite else b""
    arguments = pickled_tuple(
        storage, pickled_int(offset), _value(size), _value(stride), b"\x89", b"ccollections\nOrderedDict\n)R"
    )
    tensor = b"ctorch._utils\n_rebuild_tensor_v2\n" + arguments + b"R"
    tensor += _build(rewrite["tensor"]) if "tensor" in rewrite else b""
    tensor += _build(rewrite["slots"], slots=True) if "slots" in rewrite else b""
    header = b"".join(
        pickle.dumps(value, protocol=2) for value in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})
    )
    keys = pickle.dumps(["0"], protocol=2)
    data = struct.pack("<q", floats) + np.arange(floats, dtype=np.float32).tobytes()
    return header + b"\x80\x02}" + pickled_text("w") + tensor + b"s." + keys + data


def _numpy_reading(floats: int, offset: int, size: tuple, stride: tuple) -> np.ndarray | None:
    """What numpy reads at those indexes of the storage, or None when any of them lies outside it."""
    if any(n < 0 for n in size):
        return None
    if not all(size):
        return np.zeros(size, np.float32)
    lowest = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True) if s < 0)
    highest = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True) if s > 0)
    if lowest < 0 or highest >= floats:
        return None
    indexes = offset + sum(axis * s for axis, s in zip(np.indices(size), stride, strict=True))
    return np.arange(floats, dtype=np.float32)[indexes]


NAMED = {
    "BUILD rewrites the offset below zero: reads past the end": dict(
        floats=4, offset=0, size=(4,), stride=(1,), rewrite={"tensor": {"offset": -1}}
    ),
    "BUILD rewrites the stride negative: reads before the start": dict(
        floats=4, offset=0, size=(4,), stride=(1,), rewrite={"tensor": {"offset": 3, "stride": (-(1 << 16),)}}
    ),
    "BUILD rewrites the stride hugely negative: segfaulted": dict(
        floats=4, offset=0, size=(4,), stride=(1,), rewrite={"tensor": {"offset": 3, "stride": (-FAR,)}}
    ),
    "BUILD as slot state": dict(floats=4, offset=0, size=(4,), stride=(1,), rewrite={"slots": {"size": (1 << 20,)}}),
    "BUILD rewrites the storage's declared size": dict(
        floats=4, offset=0, size=(4,), stride=(1,), rewrite={"storage": {"numel": 1 << 20}}
    ),
    "BUILD rewrites the storage type's dtype": dict(
        floats=4, offset=0, size=(4,), stride=(1,), rewrite={"storage type": {"dtype": "float64"}}
    ),
}


def test_a_checkpoint_rewriting_a_checked_tensor_is_refused(tmp_path: Path) -> None:
    paths = []
    for number, case in enumerate(NAMED.values()):
        paths.append(tmp_path / f"{number}.pth")
        paths[-1].write_bytes(_checkpoint(**case))
    outcomes = _load_each(paths)
    for name, outcome in zip(NAMED, outcomes, strict=True):
        assert "rewrites" in outcome.get("refused", ""), f"{name}: {outcome}"


def test_the_view_is_checked_where_the_array_is_made() -> None:
    """Bounds hold in ``to_numpy`` itself, whatever made the reference (here: no checks on the way in)."""
    storage = _StorageRef(np.float32, 4, np.arange(4, dtype=np.float32))
    assert _TensorRef(storage, 1, (3,), (1,)).to_numpy().tolist() == [1.0, 2.0, 3.0]
    for offset, size, stride in [(-1, (4,), (1,)), (3, (4,), (-1,)), (0, (2,), (FAR,)), (4, (1,), (1,)), (0, (2,), 1)]:
        with pytest.raises(UnsafeCheckpointError):
            _TensorRef(storage, offset, size, stride).to_numpy()


def _random_case(rng: random.Random) -> dict:
    """Sizes, strides and offsets near the storage's edges and far beyond them, a third rewritten by a BUILD."""
    counts = [0, 1, 2, 3, 5, -1, -2, FAR, -FAR, rng.randint(-8, 16)]
    floats = rng.randint(0, 8)
    dimensions = rng.choice([0, 1, 1, 2, 2, 3])
    case = {
        "floats": floats,
        "offset": rng.choice([0, 0, 1, 2, floats - 1, floats, -1, FAR, -FAR, rng.randint(-8, 16)]),
        "size": tuple(rng.choice([1, 2, 3, 4, 0, *counts]) for _ in range(dimensions)),
        "stride": tuple(rng.choice([1, 1, 2, 0, *counts]) for _ in range(dimensions)),
    }
    if rng.random() < 1 / 3:
        fields = rng.sample(["offset", "size", "stride"], rng.randint(1, 3))
        rewritten = _random_case(random.Random(rng.random()))
        rewritten["size"] = rewritten["size"][:dimensions] + (1,) * (dimensions - len(rewritten["size"]))
        rewritten["stride"] = rewritten["stride"][:dimensions] + (1,) * (dimensions - len(rewritten["stride"]))
        case["rewrite"] = {rng.choice(["tensor", "slots"]): {field: rewritten[field] for field in fields}}
    return case


def _as_read(case: dict) -> tuple[int, tuple, tuple]:
    """The offset, size and stride the tensor has once any BUILD has run, as a plain unpickler would leave them."""
    fields = {"offset": case["offset"], "size": case["size"], "stride": case["stride"]}
    for rewritten in case.get("rewrite", {}).values():
        fields.update(rewritten)
    return fields["offset"], fields["size"], fields["stride"]


def test_fuzzed_checkpoints_load_numpys_reading_or_are_refused(tmp_path: Path) -> None:
    """Every crafted file loads exactly what numpy reads inside the storage, or is refused; none crashes the reader."""
    rng = random.Random(30)
    cases = [_random_case(rng) for _ in range(FUZZ_CASES)]
    paths = []
    for number, case in enumerate(cases):
        paths.append(tmp_path / f"{number}.pth")
        paths[-1].write_bytes(_checkpoint(**case))
    outcomes = _load_each(paths)
    assert len(outcomes) == len(cases)
    loaded = 0
    for case, outcome in zip(cases, outcomes, strict=True):
        assert "error" not in outcome, f"{case}: {outcome}"
        if "refused" in outcome:
            continue
        loaded += 1
        expected = _numpy_reading(case["floats"], *_as_read(case))
        assert expected is not None, f"{case} read outside its storage: {outcome}"
        assert outcome["shape"] == list(expected.shape), case
        assert outcome["values"] == expected.ravel().tolist(), case
        assert "rewrite" not in case, f"{case}: a BUILD on a tensor is refused"
    assert loaded >= FUZZ_CASES // 20, "the fuzzing should also craft files that are fine"
