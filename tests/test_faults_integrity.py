"""Integrity: a damaged bottleneck cache or converted backbone is recomputed, never trusted (issue 15).

Every damage here is done to real files on disk, the way a bad disk, a killed run or a stray tool would do it.
"""

from __future__ import annotations

import io
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
from PIL import Image

from retrain.core.bottleneck_cache import BottleneckCache
from retrain.core.dataset import LabeledImage, list_dataset
from retrain.core.images import load_pixels, to_float
from retrain.core.settings import SplitSettings
from retrain.core.shard_store import TRAILER_BYTES
from retrain.training.bottlenecks import compute_bottlenecks
from retrain.training.features import NON_FINITE, FeatureRunner, tflite_runner
from retrain.training.modules import cache_root, load_image_module
from retrain.training.modules.cache import TREE_DIGEST
from retrain.training.modules.runners import feature_runner
from tests.conftest import copy_dataset, run_cli, sample_photos

TRAIN_OPTIONS = (
    *("--random-seed", "7", "--how-many-training-steps", "200", "--eval-step-interval", "200"),
    *("--testing-percentage", "25", "--validation-percentage", "25"),
)


@pytest.fixture(scope="module")
def module():
    module = load_image_module("efficientnet_lite0")
    feature_runner(module)  # converted to TFLite now, so the killed writers below only write bottlenecks
    return module


@pytest.fixture(scope="module")
def photos(flowers_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    classes = {label: sample_photos(flowers_sample, label, 20) for label in ("daisy", "tulips")}
    return copy_dataset(tmp_path_factory.mktemp("photos"), classes)


@pytest.fixture(scope="module")
def clean(photos: Path, module, tmp_path_factory: pytest.TempPathFactory):
    """A cache filled once from a clean start (one shard of 40 rows), and the bottlenecks it gave."""
    cache_dir = tmp_path_factory.mktemp("clean-cache")
    result = _compute(photos, module, cache_dir)
    assert result.computed == 40 and len(set(result.content_keys)) == 40
    return cache_dir, result


def _compute(photos: Path, module, cache_dir: Path, **cache_options):
    images = list_dataset(photos, SplitSettings(20, 20)).images
    return compute_bottlenecks(images, module, BottleneckCache(cache_dir, module.cache_key, **cache_options))


def _vector_region(shard: bytearray, rows: int, width: int) -> slice:
    end = len(shard) - TRAILER_BYTES
    return slice(end - rows * width * 4, end)


def _random_bytes_in_vectors(shard: bytearray, rows: int, width: int) -> None:
    """The issue's 256 KiB (or the whole region, if smaller), the shard's size unchanged."""
    region = _vector_region(shard, rows, width)
    size = min(256 * 1024, region.stop - region.start)
    shard[region.start : region.start + size] = np.random.default_rng(0).bytes(size)


def _one_nan(shard: bytearray, rows: int, width: int) -> None:
    start = _vector_region(shard, rows, width).start + 4 * (width + 7)
    shard[start : start + 4] = np.float32(np.nan).tobytes()


def _flipped_key_bits(shard: bytearray, rows: int, width: int) -> None:
    first_key = np.load(io.BytesIO(bytes(shard)))[0]
    shard[shard.index(first_key)] ^= 0x01


def _swapped_keys(shard: bytearray, rows: int, width: int) -> None:
    """Each of two images would get the other's vector: the worst damage, as nothing looks missing."""
    first, second = np.load(io.BytesIO(bytes(shard)))[:2]
    at = shard.index(first)
    shard[at : at + 80] = second + first


def _truncated(shard: bytearray, rows: int, width: int) -> None:
    del shard[-1000:]


@pytest.mark.parametrize(
    "damage",
    [_random_bytes_in_vectors, _one_nan, _flipped_key_bits, _swapped_keys, _truncated],
    ids=lambda f: f.__name__[1:],
)
def test_damaged_shard_is_recomputed_with_one_warning_and_gives_the_clean_vectors(
    damage, clean, photos: Path, module, tmp_path: Path
) -> None:
    clean_dir, reference = clean
    shutil.copytree(clean_dir, tmp_path / "cache")
    (shard,) = (tmp_path / "cache" / module.cache_key).glob("*.shard")
    data = bytearray(shard.read_bytes())
    damage(data, 40, module.feature_size)
    shard.write_bytes(bytes(data))

    result = _compute(photos, module, tmp_path / "cache")
    assert (result.computed, result.reused) == (40, 0)
    (warning,) = result.warnings
    assert f"damaged bottleneck shard {shard}" in warning and "recomputed" in warning
    np.testing.assert_array_equal(result.vectors, reference.vectors)
    assert not shard.exists()
    again = _compute(photos, module, tmp_path / "cache")
    assert (again.computed, again.reused, again.warnings) == (0, 40, [])
    np.testing.assert_array_equal(again.vectors, reference.vectors)


def test_merging_drops_a_damaged_shard_instead_of_sealing_it_under_a_new_checksum(tmp_path: Path) -> None:
    cache = BottleneckCache(tmp_path, "module", max_small_shards=2)
    keys = [f"{i:040x}" for i in range(40)]
    vectors = np.random.default_rng(0).standard_normal((40, 16)).astype(np.float32)
    for start in range(0, 40, 10):
        cache.add(keys[start : start + 10], vectors[start : start + 10])
    damaged = cache.shards()[1]
    data = bytearray(damaged.read_bytes())
    data[-TRAILER_BYTES - 5] ^= 0xFF
    damaged.write_bytes(bytes(data))
    cache.compact()
    assert len(cache.shards()) == 1
    out = np.zeros_like(vectors)
    read = cache.read(keys, out)
    assert read.found.tolist() == [True] * 10 + [False] * 10 + [True] * 20
    assert read.damaged == []
    np.testing.assert_array_equal(out[read.found], vectors[read.found])


def test_damage_in_a_later_block_of_a_large_shard_is_found(tmp_path: Path) -> None:
    cache = BottleneckCache(tmp_path, "module")
    keys = [f"{i:040x}" for i in range(3000)]  # three read blocks of 1024 rows
    cache.add(keys, np.ones((3000, 8), np.float32))
    (shard,) = cache.shards()
    data = bytearray(shard.read_bytes())
    data[-TRAILER_BYTES - 4 : -TRAILER_BYTES] = np.float32(np.nan).tobytes()
    shard.write_bytes(bytes(data))
    out = np.zeros((2, 8), np.float32)
    read = cache.read(keys[:2], out)  # rows from the first block only: the whole shard is still checked
    assert read.found.tolist() == [False, False]
    assert [(path, reason) for path, reason in read.damaged] == [(shard, "checksum mismatch")]


def test_shard_of_the_previous_format_is_ignored_without_a_warning(tmp_path: Path) -> None:
    folder = tmp_path / "module"
    folder.mkdir()
    with open(folder / "0-old.shard", "wb") as f:  # what retrain-ci wrote before shards had a checksum
        np.save(f, np.array(["0" * 40], "S40"))
        np.save(f, np.ones((1, 8), "<f4"))
    read = BottleneckCache(tmp_path, "module").read(["0" * 40], np.zeros((1, 8), np.float32))
    assert read.found.tolist() == [False] and read.damaged == []


def test_cache_refuses_to_store_a_non_finite_vector(tmp_path: Path) -> None:
    cache = BottleneckCache(tmp_path, "module")
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="not finite"):
            cache.add(["0" * 40, "1" * 40], np.array([[1.0, 2.0], [3.0, bad]], np.float32))
    assert cache.shards() == []


class _NaNForDarkImages(tf.Module):
    """A module whose features are NaN for dark images (the log of a negative mean), as a broken module's would be."""

    def __init__(self) -> None:
        super().__init__()
        self.__call__ = tf.function(
            lambda images: tf.math.log(tf.reduce_mean(images, axis=[1, 2]) - 0.25),
            input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)],
        )


def test_image_with_nan_features_is_skipped_with_a_reason_and_never_cached(tmp_path: Path) -> None:
    tf.saved_model.save(_NaNForDarkImages(), str(tmp_path / "module"))
    module = load_image_module(str(tmp_path / "module"))
    images = []
    for label_index, (label, level) in enumerate((("dark", 10), ("bright", 200))):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.new("RGB", (48, 48), (level + i,) * 3).save(tmp_path / label / f"{i}.png")
            images.append(LabeledImage(tmp_path / label / f"{i}.png", label_index, "training"))
    cache = BottleneckCache(tmp_path / "cache", module.cache_key)
    for run, (computed, reused) in enumerate(((3, 0), (0, 3))):
        result = compute_bottlenecks(images, module, cache)
        assert (result.computed, result.reused) == (computed, reused), f"run {run}"
        assert sorted((path.parent.name, reason) for path, reason in result.skipped) == [("dark", NON_FINITE)] * 3
        assert [image.path.parent.name for image in result.images] == ["bright"] * 3
        assert np.isfinite(result.vectors).all()


def test_train_and_check_warn_once_about_a_damaged_shard_and_score_as_with_a_clean_cache(
    photos: Path, tmp_path: Path, module
) -> None:
    clean = run_cli(
        "train", photos, "--bottleneck-dir", tmp_path / "clean", "--output-dir", tmp_path / "a", *TRAIN_OPTIONS
    )
    assert clean.exit_code == 0, clean.stdout + clean.stderr
    assert "warning:" not in clean.stderr
    shutil.copytree(tmp_path / "clean", tmp_path / "damaged")
    _damage_every_shard(tmp_path / "damaged" / module.cache_key, module.feature_size)
    damaged = run_cli(
        "train",
        photos,
        "--bottleneck-dir",
        tmp_path / "damaged",
        "--output-dir",
        tmp_path / "b",
        *TRAIN_OPTIONS,
    )
    assert damaged.exit_code == 0, damaged.stdout + damaged.stderr
    (warning,) = [line for line in damaged.stderr.splitlines() if line.startswith("warning:")]
    assert "damaged bottleneck shard" in warning and "(checksum mismatch)" in warning
    assert "40 computed, 0 from cache" in damaged.stdout
    assert _accuracy_line(damaged.stdout) == _accuracy_line(clean.stdout)

    _damage_every_shard(tmp_path / "damaged" / module.cache_key, module.feature_size)
    check = run_cli("check", photos, "--only", "suspected_mislabel", "--bottleneck-dir", tmp_path / "damaged")
    assert check.exit_code in (0, 1), check.stdout + check.stderr
    (warning,) = [line for line in check.stderr.splitlines() if line.startswith("warning:")]
    assert "damaged bottleneck shard" in warning


def _damage_every_shard(folder: Path, width: int) -> None:
    for shard in folder.glob("*.shard"):
        data = bytearray(shard.read_bytes())
        _random_bytes_in_vectors(data, len(np.load(io.BytesIO(bytes(data)))), width)
        shard.write_bytes(bytes(data))


def _accuracy_line(stdout: str) -> str:
    (line,) = [line for line in stdout.splitlines() if line.startswith("Final test accuracy")]
    return line


# Kill -9 at a chosen moment of bottleneck writing: the writer kills itself at the N-th call of a function that writing
# goes through, before or after the call. 40 photos, 4 rows per shard: ten shards, then merged (more than 3 are small).
# A shard is 4 writes (keys header and rows, vectors header and rows); the merged one 3, then one per source shard.
KILLED_WRITER = """
import os, pathlib, signal, sys
from pathlib import Path

from retrain.core import content_keys
from retrain.core.bottleneck_cache import BottleneckCache
from retrain.core.shard_store import _HashingWriter
from retrain.core.dataset import LabeledImage, list_dataset
from retrain.core.settings import SplitSettings
from retrain.training.bottlenecks import compute_bottlenecks
from retrain.training.modules import load_image_module

photos, cache_dir, owner, name, at_call, when = sys.argv[1:]
owner = {"os": os, "Path": pathlib.Path, "shard writer": _HashingWriter}[owner]
original = getattr(owner, name)
calls = 0


def killed_at_call(*args, **kwargs):
    global calls
    calls += 1
    if calls == int(at_call) and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    result = original(*args, **kwargs)
    if calls == int(at_call) and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    return result


module = load_image_module("efficientnet_lite0")
cache = BottleneckCache(Path(cache_dir), module.cache_key, shard_rows=4, max_small_shards=3)
images = list_dataset(Path(photos), SplitSettings(20, 20)).images
content_keys.RACY_NS = 0  # the photos' keys kept before the kill point counts writes: keying writes none after
content_keys.content_keys([image.path for image in images], cache.root)
setattr(owner, name, killed_at_call)
compute_bottlenecks(images, module, cache)
"""

# (where the writer dies, entries a later run finds complete, whether it leaves a partial temporary file)
KILL_POINTS = {
    "third shard written up to its checksum": (("shard writer", "write", 12, "after"), 8, True),
    "third shard complete, not yet synced or renamed": (("os", "fsync", 3, "before"), 8, True),
    "third shard just renamed into place": (("os", "replace", 3, "after"), 12, False),
    "merged shard half written (5 of 10 sources)": (("shard writer", "write", 48, "after"), 40, True),
    "merged shard in place, its sources not yet deleted": (("Path", "unlink", 1, "before"), 40, False),
}


@pytest.fixture(scope="module")
def killed_caches(photos: Path, module, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int]]:
    """One cache per kill point, each left by a writer killed there; the writers run at once to save time."""
    writers = {}
    for point, (injection, _, _) in KILL_POINTS.items():
        cache_dir = tmp_path_factory.mktemp("killed")
        command = [sys.executable, "-c", KILLED_WRITER, str(photos), str(cache_dir), *map(str, injection)]
        writers[point] = (
            cache_dir,
            subprocess.Popen(
                command, cwd=Path(__file__).parents[1], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            ),
        )
    results = {}
    for point, (cache_dir, writer) in writers.items():
        _, stderr = writer.communicate(timeout=600)
        assert writer.returncode == -signal.SIGKILL, f"{point}: the writer was not killed\n{stderr}"
        results[point] = cache_dir, writer.returncode
    return results


@pytest.mark.parametrize("point", KILL_POINTS)
def test_run_killed_while_writing_leaves_no_partial_shard_and_the_next_run_computes_only_what_is_missing(
    point: str, killed_caches, clean, photos: Path, module
) -> None:
    _, complete, partial_left = KILL_POINTS[point]
    cache_dir, _ = killed_caches[point]
    _, reference = clean
    cache = BottleneckCache(cache_dir, module.cache_key)
    temporaries = list(cache.directory.glob(".*.tmp"))
    assert len(temporaries) == partial_left and all(t.stat().st_size > 0 for t in temporaries)
    out = np.zeros_like(reference.vectors)
    read = cache.read(reference.content_keys, out)
    assert read.damaged == []  # every shard a later run lists is whole and checks out
    assert read.found.sum() == complete
    np.testing.assert_array_equal(out[read.found], reference.vectors[read.found])
    again = _compute(photos, module, cache_dir)
    assert (again.reused, again.computed, again.warnings) == (complete, 40 - complete, [])
    np.testing.assert_array_equal(again.vectors, reference.vectors)


@pytest.fixture
def module_cache_copy(module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the session's converted modules (SavedModel and TFLite), used as RETRAIN_CI_CACHE by one test."""
    copy = tmp_path / "module-cache"
    shutil.copytree(cache_root(), copy)
    monkeypatch.setenv("RETRAIN_CI_CACHE", str(copy))
    return copy


@pytest.fixture(scope="module")
def pixels(flowers_sample: Path, module) -> np.ndarray:
    return np.stack([load_pixels(photo, module.image_size) for photo in sample_photos(flowers_sample, "roses", 4)])


def _features(runner: FeatureRunner, pixels: np.ndarray) -> np.ndarray:
    return np.concatenate([runner(pixels[i : i + 1]) for i in range(len(pixels))])


def _tamper(path: Path) -> bytes:
    """4 KiB of random bytes two thirds into the file, its size unchanged; returns the tampered bytes."""
    data = bytearray(path.read_bytes())
    at = 2 * len(data) // 3
    data[at : at + 4096] = np.random.default_rng(2).bytes(4096)
    path.write_bytes(bytes(data))
    return bytes(data)


def test_tampered_converted_tflite_file_is_rebuilt_and_gives_the_clean_features(
    module, module_cache_copy: Path, pixels: np.ndarray
) -> None:
    clean_features = _features(feature_runner(module, "tflite"), pixels)
    (path,) = (module_cache_copy / "tflite").glob(f"{module.cache_key}-*.tflite")
    tampered = _tamper(path)
    used_as_is = _features(tflite_runner(tampered, module.image_size, module.feature_size, 1), pixels)
    assert not np.allclose(used_as_is, clean_features, atol=1e-3)  # what a run would have trained on
    np.testing.assert_array_equal(_features(feature_runner(module, "tflite"), pixels), clean_features)
    assert path.read_bytes() != tampered


@pytest.mark.parametrize("damage", ["tampered variables", "no recorded digest"])
def test_damaged_converted_saved_model_is_rebuilt_and_gives_the_clean_features(
    damage: str, module, module_cache_copy: Path, pixels: np.ndarray
) -> None:
    clean_features = module(to_float(pixels)).numpy()
    (directory,) = (module_cache_copy / "modules").glob("efficientnet_lite0-*/feature_vector")
    variables = directory / "variables" / "variables.data-00000-of-00001"
    if damage == "tampered variables":
        tampered = _tamper(variables)
        with pytest.raises(tf.errors.DataLossError):  # what loading it as is did: a traceback
            hub.load(str(directory))
        rebuilt = load_image_module("efficientnet_lite0")
        assert variables.read_bytes() != tampered
    else:  # a cache converted by retrain-ci before digests were recorded
        (directory / TREE_DIGEST).unlink()
        old_file = (directory / "saved_model.pb").stat().st_ino
        rebuilt = load_image_module("efficientnet_lite0")
        assert (directory / TREE_DIGEST).is_file() and (directory / "saved_model.pb").stat().st_ino != old_file
    np.testing.assert_array_equal(rebuilt(to_float(pixels)).numpy(), clean_features)
    assert not list(directory.parent.glob(".*"))  # no staging or discarded copy left behind
