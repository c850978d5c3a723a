"""Files that decode wrongly or dangerously: 16-bit grey, decompression bombs, LFS pointers, unreadable folders and
crafted checkpoints. Each is named for what it is; none costs unbounded memory, crashes or silently shrinks the data."""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retrain.core.images import MAX_DECODE_PIXELS, OversizedImageError, decode_image, load_pixels
from tests.checkpoints import pickled_int, pickled_text, pickled_tuple
from tests.conftest import copy_dataset, run_cli, sample_photos

REPO = Path(__file__).resolve().parents[1]
# the checks that need bottlenecks, and TensorFlow
CHEAP = ("--skip", "suspected_mislabel,shortcut_bias,outlier", "--no-bottlenecks")
LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 12345\n"
)


def _python(*args: str | Path, preexec_fn=None) -> subprocess.CompletedProcess:
    """This interpreter on this checkout, in a process of its own."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, preexec_fn=preexec_fn, timeout=300)


def _findings(stdout: str, check: str) -> list[dict]:
    return [finding for finding in json.loads(stdout)["findings"] if finding["check"] == check]


@pytest.fixture
def two_classes(flowers_sample: Path, tmp_path: Path) -> Path:
    return copy_dataset(
        tmp_path / "photos", {label: sample_photos(flowers_sample, label, 30) for label in ("daisy", "roses")}
    )


# 16-bit grey


def _grey_gradient(path: Path, dtype: str) -> Path:
    """256 columns holding 0, 257, 514, ... 65535: the 8-bit values 0..255 at 16 bits."""
    Image.fromarray(np.tile((np.arange(256) * 257).astype(dtype), (32, 1))).save(path)
    return path


@pytest.mark.parametrize(
    ("name", "dtype", "mode"),
    [("gradient.png", "<u2", "I;16"), ("gradient.tif", ">u2", "I;16B"), ("gradient32.tif", "<i4", "I")],
)
def test_16_bit_grey_decodes_to_its_8_bit_values(tmp_path: Path, name: str, dtype: str, mode: str) -> None:
    path = _grey_gradient(tmp_path / name, dtype)
    assert Image.open(path).mode == mode
    pixels = load_pixels(path, (32, 256))
    assert (pixels == np.arange(256, dtype=np.uint8)[None, :, None]).all()


def test_16_bit_grey_png_is_not_called_overexposed(two_classes: Path) -> None:
    _grey_gradient(two_classes / "daisy" / "gradient.png", "<u2")
    run = run_cli("check", two_classes, "--only", "light,corrupt_image", "--format", "json")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert json.loads(run.stdout)["findings"] == []


# Pixel budget


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 13000x13000 1-bit PNG: about 20 KB on disk, 169 million pixels decoded."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    Image.new("1", (13000, 13000)).save(path, optimize=True)
    assert path.stat().st_size < 50_000
    return path


PEAK_RSS = """
import resource, subprocess, sys
completed = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stderr.write(completed.stderr)
print(completed.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
print(completed.stdout)
"""


def test_oversized_images_are_findings_and_the_audit_memory_stays_bounded(two_classes: Path, bomb: Path) -> None:
    """Four bombs (two decoded at once) cost 2.7 GB before; two images just under the budget are decoded."""
    side = int(MAX_DECODE_PIXELS**0.5) - 10
    for label in ("daisy", "roses"):
        for copy in (1, 2):
            (two_classes / label / f"bomb{copy}.png").write_bytes(bomb.read_bytes())
        Image.new("1", (side, side), 1).save(two_classes / label / "large.png")
    completed = _python(
        "-c", PEAK_RSS, sys.executable, "-m", "retrain", "check", two_classes, *CHEAP, "--format", "json"
    )
    exit_code, peak_mb, report = completed.stdout.split(maxsplit=2)
    assert exit_code == "1", completed.stderr
    oversized = _findings(report, "oversized_image")
    assert sorted(path for finding in oversized for path in finding["paths"]) == sorted(
        f"{label}/bomb{copy}.png" for label in ("daisy", "roses") for copy in (1, 2)
    )
    assert "13000x13000 pixels" in oversized[0]["message"]
    assert _findings(report, "corrupt_image") == []
    assert int(peak_mb) < 600, f"peak RSS {peak_mb} MB"


def test_train_skips_an_oversized_image_with_its_reason(
    two_classes: Path, bomb: Path, bottleneck_dir: Path, tmp_path: Path
) -> None:
    (two_classes / "daisy" / "bomb.png").write_bytes(bomb.read_bytes())
    run = run_cli(
        "train", two_classes, "--bottleneck-dir", bottleneck_dir, "--output-dir", tmp_path / "out",
        "--how-many-training-steps", "20", "--random-seed", "0",
    )  # fmt: skip
    assert run.exit_code == 0, run.stdout + run.stderr
    warning = " ".join(run.stderr.split())
    assert f"skipped unreadable image {two_classes / 'daisy' / 'bomb.png'}: 13000x13000 pixels" in warning
    assert json.loads((tmp_path / "out" / "report" / "metrics.json").read_text())["images"]["skipped"] == 1


def test_a_bomb_is_refused_before_it_is_decoded(bomb: Path) -> None:
    with pytest.raises(OversizedImageError, match="over the 24 megapixels"):
        decode_image(bomb, (224, 224))


# Git LFS pointers


def test_lfs_pointers_are_named_as_such_by_check(two_classes: Path) -> None:
    for label in ("daisy", "roses"):
        (two_classes / label / "x.jpg").write_text(LFS_POINTER)
    run = run_cli("check", two_classes, *CHEAP, "--format", "json")
    pointers = _findings(run.stdout, "lfs_pointer")
    assert sorted(finding["paths"][0] for finding in pointers) == ["daisy/x.jpg", "roses/x.jpg"]
    assert all(finding["severity"] == "error" for finding in pointers)
    assert "lfs: true" in pointers[0]["message"] and "git lfs pull" in pointers[0]["message"]
    assert _findings(run.stdout, "corrupt_image") == []


def test_train_refuses_a_checkout_without_lfs_content(two_classes: Path, bottleneck_dir: Path, tmp_path: Path) -> None:
    for photo in sorted(two_classes.glob("*/*.jpg"))[::3]:
        photo.write_text(LFS_POINTER)
    run = run_cli("train", two_classes, "--bottleneck-dir", bottleneck_dir, "--output-dir", tmp_path / "out")
    assert run.exit_code == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 20 of 60 images are Git LFS pointers"), run.stderr
    assert "lfs: true" in lines[0] and "Traceback" not in run.stdout + run.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.pb"))


# Unreadable folders

PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2


def _as_an_ordinary_user() -> None:
    """preexec_fn: drop the capabilities that let root read any folder, so permissions apply to the child as to any
    user (root's own interpreter under /root stays readable, which setuid to nobody would lose)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture
def locked_subfolder(two_classes: Path):
    """A subfolder of daisy with three photos, mode 000; the child processes cannot list it."""
    locked = two_classes / "daisy" / "more"
    locked.mkdir()
    for photo in sorted((two_classes / "roses").glob("*.jpg"))[:3]:
        (locked / f"extra_{photo.name}").write_bytes(photo.read_bytes())
    locked.chmod(0)
    preexec = _as_an_ordinary_user if os.geteuid() == 0 else None
    try:
        probe = subprocess.run(["ls", locked], capture_output=True, preexec_fn=preexec)
    except subprocess.SubprocessError as error:
        pytest.skip(f"cannot drop root's permission bypass here ({error}), so no folder is unreadable")
    if probe.returncode == 0:
        pytest.skip("the child can still list a mode-000 folder (root bypass could not be dropped)")
    yield locked, preexec
    locked.chmod(0o755)


def test_check_reports_an_unreadable_subfolder(locked_subfolder) -> None:
    locked, preexec = locked_subfolder
    root = locked.parents[1]
    completed = _python("-m", "retrain", "check", root, *CHEAP, "--format", "json", preexec_fn=preexec)
    assert completed.returncode == 1, completed.stderr
    (finding,) = _findings(completed.stdout, "unreadable_folder")
    assert finding["paths"] == ["daisy/more"] and finding["severity"] == "error"
    assert "Permission denied" in finding["message"]


def test_train_refuses_a_dataset_with_an_unreadable_subfolder(locked_subfolder, tmp_path: Path) -> None:
    locked, preexec = locked_subfolder
    completed = _python(
        "-m", "retrain", "train", locked.parents[1], "--output-dir", tmp_path / "out", preexec_fn=preexec
    )  # fmt: skip
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot read folder {locked}: Permission denied"), lines


# Crafted checkpoints


def _checkpoint(*, declared: int, stored: int, floats: int, offset: int, size: tuple, stride: tuple) -> bytes:
    """A legacy PyTorch checkpoint, pickle opcode by opcode: one tensor ``w`` on one float storage that declares
    ``declared`` elements, whose data header says ``stored`` and which holds ``floats`` float32 values."""
    storage = pickled_tuple(
        pickled_text("storage"),
        b"ctorch\nFloatStorage\n",
        pickled_text("0"),
        pickled_text("cpu"),
        pickled_int(declared),
        b"N",
    )
    arguments = pickled_tuple(
        storage + b"Q",
        pickled_int(offset),
        pickled_tuple(*map(pickled_int, size)),
        pickled_tuple(*map(pickled_int, stride)),
        b"\x89",
        b"ccollections\nOrderedDict\n)R",
    )
    state = b"\x80\x02}" + pickled_text("w") + b"ctorch._utils\n_rebuild_tensor_v2\n" + arguments + b"Rs."
    header = b"".join(
        pickle.dumps(value, protocol=2) for value in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})
    )
    keys = pickle.dumps(["0"], protocol=2)
    data = struct.pack("<q", stored) + np.arange(floats, dtype=np.float32).tobytes()
    return header + state + keys + data


LOAD_ALONE = """
import importlib.util, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("torch_weights", sys.argv[1])
module = sys.modules["torch_weights"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
try:
    print(module.load_legacy_state_dict(Path(sys.argv[2]))["w"].tolist())
except module.UnsafeCheckpointError as error:
    print("refused:", error)
"""

CRAFTED = {
    "size past the storage": dict(declared=1, stored=1, floats=1, offset=0, size=(4096,), stride=(1,)),
    "stride past the storage": dict(declared=2, stored=2, floats=2, offset=0, size=(2,), stride=(1 << 40,)),
    "negative stride": dict(declared=2, stored=2, floats=2, offset=1, size=(2,), stride=(-(1 << 30),)),
    "negative offset": dict(declared=2, stored=2, floats=2, offset=-(1 << 30), size=(2,), stride=(1,)),
    "offset past the storage": dict(declared=2, stored=2, floats=2, offset=2, size=(1,), stride=(1,)),
    "broadcast beyond the storage": dict(declared=1, stored=1, floats=1, offset=0, size=(1 << 40,), stride=(0,)),
    "huge numel": dict(declared=1 << 62, stored=1 << 62, floats=1, offset=0, size=(1,), stride=(1,)),
    "fewer elements stored than declared": dict(declared=4, stored=1, floats=1, offset=0, size=(4,), stride=(1,)),
    "data shorter than its header": dict(declared=4, stored=4, floats=2, offset=0, size=(4,), stride=(1,)),
}


def _load_alone(path: Path) -> subprocess.CompletedProcess:
    """Load in a process of its own (the reader file alone, no TensorFlow): a segfault fails the test, not pytest."""
    return _python("-c", LOAD_ALONE, REPO / "retrain" / "training" / "modules" / "torch_weights.py", path)


def test_a_consistent_crafted_checkpoint_loads(tmp_path: Path) -> None:
    """The crafting is right: the same file with a view inside its storage reads back the stored values."""
    path = tmp_path / "good.pth"
    path.write_bytes(_checkpoint(declared=6, stored=6, floats=6, offset=1, size=(2, 2), stride=(1, 2)))
    completed = _load_alone(path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[[1.0, 3.0], [2.0, 4.0]]"


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_a_crafted_checkpoint_is_refused_without_reading_past_its_data(tmp_path: Path, case: str) -> None:
    path = tmp_path / "crafted.pth"
    path.write_bytes(_checkpoint(**CRAFTED[case]))
    completed = _load_alone(path)
    assert completed.returncode == 0, f"{case}: exit {completed.returncode}\n{completed.stderr}"
    assert completed.stdout.startswith("refused: "), f"{case}: {completed.stdout[:200]}{completed.stderr[-500:]}"
