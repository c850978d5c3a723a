"""The bottleneck cache: keyed by content, reused across runs, safe against killed and concurrent writers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retrain.core.bottleneck_cache import BottleneckCache
from retrain.core.dataset import list_dataset
from retrain.core.settings import SplitSettings
from retrain.training.bottlenecks import compute_bottlenecks
from retrain.training.modules import load_image_module
from retrain.training.modules.runners import converted_module
from tests.conftest import copy_dataset, sample_photos

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def module():
    return load_image_module("efficientnet_lite0")


@pytest.fixture
def photos(flowers_sample: Path, tmp_path: Path) -> Path:
    return copy_dataset(tmp_path / "photos", {c: sample_photos(flowers_sample, c, 10) for c in ("daisy", "tulips")})


def _compute(photos: Path, module, cache_dir: Path):
    dataset = list_dataset(photos, SplitSettings(20, 20))
    return compute_bottlenecks(dataset.images, module, BottleneckCache(cache_dir, module.cache_key))


def test_second_run_computes_nothing_and_gives_the_same_vectors(photos: Path, module, tmp_path: Path) -> None:
    first = _compute(photos, module, tmp_path / "cache")
    second = _compute(photos, module, tmp_path / "cache")
    assert (first.computed, first.reused) == (20, 0)
    assert (second.computed, second.reused) == (0, 20)
    np.testing.assert_array_equal(first.vectors, second.vectors)


def test_edited_image_is_recomputed_and_renamed_one_reused(photos: Path, module, tmp_path: Path) -> None:
    _compute(photos, module, tmp_path / "cache")
    daisies = sorted((photos / "daisy").glob("*.jpg"))
    with Image.open(daisies[0]) as image:
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(daisies[0])
    daisies[1].rename(photos / "daisy" / "renamed.jpg")
    shutil.move(daisies[2], photos / "tulips" / daisies[2].name)
    again = _compute(photos, module, tmp_path / "cache")
    assert (again.computed, again.reused) == (1, 19)


def test_damaged_shards_and_stray_temporaries_are_not_trusted(photos: Path, module, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    reference = _compute(photos, module, cache_dir)
    shard_dir = cache_dir / module.cache_key
    # What a writer killed mid-write would leave if writes were not atomic: a temp file, shards cut anywhere. Their
    # names sort first, so they are read before the good shard.
    (shard_dir / ".half-written.tmp").write_bytes(b"\x93NUMPY garbage")
    shard = next(shard_dir.glob("*.shard")).read_bytes()
    for cut in (*range(0, 2000, 50), *range(2000, len(shard), len(shard) // 8), len(shard) - 1):
        (shard_dir / f"0-cut-at-{cut}.shard").write_bytes(shard[:cut])
    again = _compute(photos, module, cache_dir)
    assert again.reused == 20
    np.testing.assert_array_equal(again.vectors, reference.vectors)


def test_run_killed_while_filling_the_cache_loses_at_most_its_last_shard(
    flowers_sample: Path, module, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    shard_dir = cache_dir / module.cache_key
    writer = _writer(flowers_sample, cache_dir, tmp_path / "unused.npy", shard_rows=8)
    deadline = time.monotonic() + 180
    while len(list(shard_dir.glob("*.shard"))) < 3:
        assert writer.poll() is None, "the writer finished before it could be killed"
        assert time.monotonic() < deadline, "the writer wrote no shard in time"
        time.sleep(0.005)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    dataset = list_dataset(flowers_sample, SplitSettings(20, 20))
    again = compute_bottlenecks(dataset.images, module, BottleneckCache(cache_dir, module.cache_key))
    assert again.reused >= 24 and again.reused % 8 == 0
    assert again.reused + again.computed == 200
    clean = compute_bottlenecks(dataset.images, module, BottleneckCache(tmp_path / "clean", module.cache_key))
    np.testing.assert_allclose(again.vectors, clean.vectors, rtol=0, atol=1e-6)


def test_two_processes_filling_one_cache_at_once(photos: Path, module, tmp_path: Path) -> None:
    # Tiny shards and merge threshold, so both processes write and merge shards while the other reads and writes.
    writers = [
        _writer(photos, tmp_path / "cache", tmp_path / f"vectors-{i}.npy", shard_rows=2, max_small_shards=2)
        for i in range(2)
    ]
    for writer in writers:
        assert writer.wait(timeout=300) == 0, writer.stderr.read()
    first, second = (np.load(tmp_path / f"vectors-{i}.npy") for i in range(2))
    np.testing.assert_allclose(first, second, rtol=0, atol=1e-6)
    again = _compute(photos, module, tmp_path / "cache")
    assert (again.computed, again.reused) == (0, 20)
    np.testing.assert_allclose(again.vectors, first, rtol=0, atol=1e-6)
    # A writer skips merging while the other holds the merge lock, so extra shards may be left (how many depends on
    # timing: 9 under heavy load), but merges did run (each writer wrote 10), and the next merge folds the rest in.
    cache = BottleneckCache(tmp_path / "cache", module.cache_key, shard_rows=2, max_small_shards=2)
    assert len(cache.shards()) < 2 * 10
    cache.compact()
    assert len(cache.shards()) <= 3
    assert _compute(photos, module, tmp_path / "cache").reused == 20


def test_two_threads_filling_one_cache_at_once(photos: Path, module, tmp_path: Path) -> None:
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(_compute(photos, module, tmp_path / "cache"))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2
    np.testing.assert_allclose(results[0].vectors, results[1].vectors, atol=1e-5)
    assert _compute(photos, module, tmp_path / "cache").reused == 20


def test_identical_copies_are_computed_once(photos: Path, module, tmp_path: Path) -> None:
    daisy = next((photos / "daisy").glob("*.jpg"))
    shutil.copy(daisy, photos / "tulips" / "copy-of-a-daisy.jpg")
    result = _compute(photos, module, tmp_path / "cache")
    assert result.computed == 20 and len(result.images) == 21


def test_many_small_shards_are_merged_into_one_that_reads_back_the_same(tmp_path: Path) -> None:
    cache = BottleneckCache(tmp_path, "module", max_small_shards=4)
    keys = [f"{i:040x}" for i in range(100)]
    vectors = np.random.default_rng(0).standard_normal((100, 16)).astype(np.float32)
    for start in range(0, 100, 10):
        cache.add(keys[start : start + 10], vectors[start : start + 10])
    cache.add(keys[:5], vectors[:5])  # a second run computed these too
    cache.compact()
    assert len(cache.shards()) == 1
    wanted = [*keys[::-1], "f" * 40]
    out = np.zeros((len(wanted), 16), np.float32)
    found = cache.read(wanted, out).found
    assert found.tolist() == [True] * 100 + [False]
    np.testing.assert_array_equal(out[:100], vectors[::-1])


WRITER = """
import sys
from pathlib import Path

import numpy as np

from retrain.core.bottleneck_cache import BottleneckCache
from retrain.training.bottlenecks import compute_bottlenecks
from retrain.core.dataset import list_dataset
from retrain.core.settings import SplitSettings
from retrain.training.modules import load_image_module

photos, cache_dir, vectors_file, shard_rows, max_small_shards = sys.argv[1:]
module = load_image_module("efficientnet_lite0")
cache = BottleneckCache(Path(cache_dir), module.cache_key, int(shard_rows), int(max_small_shards))
result = compute_bottlenecks(list_dataset(Path(photos), SplitSettings(20, 20)).images, module, cache)
np.save(vectors_file, result.vectors)
"""


def _writer(photos: Path, cache_dir: Path, vectors_file: Path, shard_rows: int, max_small_shards: int = 8):
    """A separate ``compute_bottlenecks`` process, as a second ``retrain-ci train`` would be."""
    arguments = [photos, cache_dir, vectors_file, shard_rows, max_small_shards]
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, *map(str, arguments)],
        cwd=Path(__file__).parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_dataset_fingerprint_follows_content_from_the_cache_keys(photos: Path, module, tmp_path: Path) -> None:
    from retrain.core.dataset import dataset_fingerprint as fingerprint

    def current() -> str:
        dataset = list_dataset(photos, SplitSettings(20, 20))
        result = compute_bottlenecks(dataset.images, module, BottleneckCache(tmp_path / "cache", module.cache_key))
        return fingerprint(dataset, result.images, result.content_keys)

    first = current()
    assert current() == first
    daisy = sorted((photos / "daisy").glob("*.jpg"))[0]
    with Image.open(daisy) as image:
        image.rotate(90).save(daisy)
    assert current() != first


def test_an_audit_with_the_backbone_converted_computes_bottlenecks_without_tensorflow(
    photos: Path, module, tmp_path: Path
) -> None:
    """A re-audit (a pull request's) whose bundled backbone's TFLite form is cached computes the new photos'
    bottlenecks with LiteRT alone: TensorFlow's import (5 s) is not paid for a handful of photos (issue 29). The
    vectors are those of training's path, which runs the same converted form."""
    converted_module(module)  # converted and cached once, as the first bottlenecks of any run do
    expected = _compute(photos, module, tmp_path / "trained")
    script = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from retrain.core.dataset import list_dataset\n"
        "from retrain.core.hooks import Hooks\n"
        "from retrain.core.settings import ModuleSettings, SplitSettings\n"
        "from retrain.training.bottlenecks import bottleneck_source\n"
        "images = list_dataset(Path(sys.argv[1]), SplitSettings(20, 20)).images\n"
        "found = bottleneck_source(ModuleSettings(bottleneck_dir=Path(sys.argv[2])))(images, Hooks())\n"
        "np.save(sys.argv[3], found.vectors)\n"
        "print(found.computed, 'tensorflow' in sys.modules)\n"
    )
    vectors = tmp_path / "audit.npy"
    completed = subprocess.run(
        [sys.executable, "-c", script, str(photos), str(tmp_path / "audit"), str(vectors)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert completed.stdout.split() == [str(len(expected.vectors)), "False"], completed.stderr
    np.testing.assert_array_equal(np.load(vectors), expected.vectors)
