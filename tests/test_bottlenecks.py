"""The bottleneck cache: keyed by content, reused across runs, safe against killed and concurrent writers."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retrain.bottlenecks import BottleneckCache, compute_bottlenecks
from retrain.dataset import list_dataset
from retrain.modules import load_image_module
from tests.conftest import copy_dataset, sample_photos


@pytest.fixture(scope="module")
def module():
    return load_image_module("efficientnet_lite0")


@pytest.fixture
def photos(flowers_sample: Path, tmp_path: Path) -> Path:
    return copy_dataset(tmp_path / "photos", {c: sample_photos(flowers_sample, c, 10) for c in ("daisy", "tulips")})


def _compute(photos: Path, module, cache_dir: Path):
    dataset = list_dataset(photos, 20, 20)
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


def test_killed_writer_leaves_nothing_a_later_run_trusts(photos: Path, module, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    reference = _compute(photos, module, cache_dir)
    shard_dir = cache_dir / module.cache_key
    # What a writer killed at each point leaves: a temp file, vectors without keys, a truncated shard.
    (shard_dir / ".half-written.tmp").write_bytes(b"\x93NUMPY garbage")
    keys_file = next(shard_dir.glob("*.keys.npy"))
    vectors_file = keys_file.with_name(keys_file.name.replace(".keys.npy", ".vectors.npy"))
    shutil.copy(vectors_file, shard_dir / "9-orphan.vectors.npy")
    (shard_dir / "9-truncated.keys.npy").write_bytes(keys_file.read_bytes())
    (shard_dir / "9-truncated.vectors.npy").write_bytes(vectors_file.read_bytes()[:1000])
    again = _compute(photos, module, cache_dir)
    assert again.reused == 20
    np.testing.assert_array_equal(again.vectors, reference.vectors)


def test_two_runs_filling_one_cache_at_once(photos: Path, module, tmp_path: Path) -> None:
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
