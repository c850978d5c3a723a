"""The incremental audit: each image's properties cached by content, so a re-audit decodes only what it has not seen;
and ``retrain-ci cache prune``, which keeps the caches to what the dataset holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datacheck.properties import property_cache
from datacheck.settings import AuditSettings
from retrain.core.bottleneck_cache import BottleneckCache
from retrain.core.shard_store import content_key
from tests.conftest import copy_dataset, run_cli, sample_photos

# Pixel checks only: no TensorFlow, and every finding comes from the property table.
PIXEL_CHECKS = ("--skip", "suspected_mislabel,outlier", "--no-bottlenecks")
PROPERTIES_FOLDER = property_cache(AuditSettings()).directory.name


@pytest.fixture
def photos(tmp_path: Path, flowers_sample: Path) -> Path:
    """24 photos in two classes, plus a grey copy and a corrupt file, so the audit has findings to compare."""
    root = copy_dataset(tmp_path / "photos", {c: sample_photos(flowers_sample, c, 12) for c in ("daisy", "roses")})
    first = sorted((root / "daisy").glob("*.jpg"))[0]
    Image.open(first).convert("L").save(root / "roses" / "grey copy.jpg", quality=90)
    (root / "roses" / "broken.jpg").write_bytes(first.read_bytes()[:2000])
    return root


def _audit(root: Path, cache: Path, *args: str | Path) -> tuple[dict, str]:
    run = run_cli("check", root, "--format", "json", "--property-cache", cache, *PIXEL_CHECKS, *args)
    assert run.exit_code in (0, 1), run.stdout + run.stderr
    return json.loads(run.stdout), run.stderr


def test_reaudit_of_an_unchanged_dataset_decodes_nothing_and_finds_the_same(photos: Path, tmp_path: Path) -> None:
    cold, _ = _audit(photos, tmp_path / "cache")
    warm, _ = _audit(photos, tmp_path / "cache")
    assert cold["summary"]["properties"] == {"computed": 26, "reused": 0}
    assert warm["summary"]["properties"] == {"computed": 0, "reused": 26}
    checks = {finding["check"] for finding in cold["findings"]}
    assert {"corrupt_image", "grayscale", "near_duplicates"} <= checks
    assert warm["findings"] == cold["findings"]
    assert (tmp_path / "cache" / PROPERTIES_FOLDER).is_dir()


def test_after_editing_one_photo_only_that_one_is_decoded(photos: Path, tmp_path: Path) -> None:
    _audit(photos, tmp_path / "cache")
    edited = sorted((photos / "roses").glob("*.jpg"))[3]
    Image.open(edited).rotate(90, expand=True).save(edited, quality=80)
    warm, _ = _audit(photos, tmp_path / "cache")
    assert warm["summary"]["properties"] == {"computed": 1, "reused": 25}


def _cache_warnings(stderr: str) -> int:
    """Warnings but the one a pixel-only audit always prints (its duplicate checks run without bottlenecks)."""
    return sum("warning:" in line and "perceptual hashes only" not in line for line in stderr.splitlines())


def test_renamed_and_moved_photos_are_reused(photos: Path, tmp_path: Path) -> None:
    _audit(photos, tmp_path / "cache")
    moved = sorted((photos / "roses").glob("*.jpg"))[4]
    moved.rename(photos / "daisy" / "renamed.jpg")
    warm, _ = _audit(photos, tmp_path / "cache")
    assert warm["summary"]["properties"] == {"computed": 0, "reused": 26}


def test_a_damaged_property_shard_is_ignored_with_a_warning_and_measured_again(photos: Path, tmp_path: Path) -> None:
    cold, _ = _audit(photos, tmp_path / "cache")
    (shard,) = (tmp_path / "cache" / PROPERTIES_FOLDER).glob("*.shard")
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    warm, stderr = _audit(photos, tmp_path / "cache")
    assert warm["summary"]["properties"] == {"computed": 26, "reused": 0}
    assert "ignored damaged image-properties shard" in stderr and _cache_warnings(stderr) == 1
    assert warm["findings"] == cold["findings"]
    again, stderr = _audit(photos, tmp_path / "cache")
    assert again["summary"]["properties"] == {"computed": 0, "reused": 26} and _cache_warnings(stderr) == 0


def test_the_property_cache_lives_beside_the_bottlenecks_or_where_the_settings_file_says(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = run_cli("check", photos, "--format", "json", "--bottleneck-dir", tmp_path / "bottlenecks", *PIXEL_CHECKS)
    assert json.loads(run.stdout)["summary"]["properties"]["computed"] == 26
    assert list((tmp_path / "bottlenecks" / PROPERTIES_FOLDER).glob("*.shard"))

    (tmp_path / "retrain-ci.toml").write_text('property-cache = "from-settings"\n')
    monkeypatch.chdir(tmp_path)
    run = run_cli("check", photos, "--format", "json", *PIXEL_CHECKS)
    assert json.loads(run.stdout)["summary"]["properties"]["computed"] == 26
    assert list((tmp_path / "from-settings" / PROPERTIES_FOLDER).glob("*.shard"))


def test_an_unwritable_property_cache_is_one_error_line_before_any_decoding(photos: Path, tmp_path: Path) -> None:
    (tmp_path / "a file").write_text("")
    run = run_cli("check", photos, "--property-cache", tmp_path / "a file", *PIXEL_CHECKS)
    assert run.exit_code == 2
    assert run.stderr.startswith("error: cannot write the property cache") and run.stderr.count("\n") == 1


def test_cache_prune_drops_the_entries_of_deleted_photos_and_keeps_the_rest(photos: Path, tmp_path: Path) -> None:
    bottlenecks = tmp_path / "bottlenecks"
    _audit(photos, bottlenecks, "--bottleneck-dir", bottlenecks)
    files = sorted(photos.rglob("*.jpg"))
    keys = sorted({content_key(path) for path in files})
    for module in ("module-a", "module-a-mirrored"):  # as training leaves them: the same keys in each module folder
        BottleneckCache(bottlenecks, module).add(keys, np.arange(len(keys) * 4, dtype=np.float32).reshape(-1, 4))
    deleted = [file for file in files if file.parent.name == "daisy"][:3]
    deleted_keys = {content_key(file) for file in deleted}
    for file in deleted:
        file.unlink()

    run = run_cli("cache", "prune", photos, "--bottleneck-dir", bottlenecks)
    assert run.exit_code == 0, run.stdout + run.stderr
    assert f"{bottlenecks / PROPERTIES_FOLDER}: removed 3 entries" in run.stdout
    assert f"{bottlenecks / 'module-a-mirrored'}: removed 3 entries" in run.stdout
    assert "removed 9 cache entries" in run.stdout

    for module in ("module-a", "module-a-mirrored"):
        cache = BottleneckCache(bottlenecks, module)
        found = cache.read(keys, np.zeros((len(keys), 4), np.float32)).found
        assert sorted(np.asarray(keys)[found]) == sorted(set(keys) - deleted_keys)
    warm, _ = _audit(photos, bottlenecks, "--bottleneck-dir", bottlenecks)
    assert warm["summary"]["properties"] == {"computed": 0, "reused": 23}

    again = run_cli("cache", "prune", photos, "--bottleneck-dir", bottlenecks)
    assert "removed 0 cache entries" in again.stdout


def test_cache_prune_of_a_missing_or_empty_dataset_is_one_error_line_and_removes_nothing(
    photos: Path, tmp_path: Path
) -> None:
    _audit(photos, tmp_path / "cache")
    shards = sorted((tmp_path / "cache").rglob("*.shard"))
    run = run_cli("cache", "prune", tmp_path / "nowhere", "--property-cache", tmp_path / "cache")
    assert run.exit_code == 2 and run.stderr.startswith("error: image folder") and run.stderr.count("\n") == 1
    (tmp_path / "empty").mkdir()
    run = run_cli("cache", "prune", tmp_path / "empty", "--property-cache", tmp_path / "cache")
    assert run.exit_code == 2 and run.stderr.startswith("error: no images in") and run.stderr.count("\n") == 1
    assert sorted((tmp_path / "cache").rglob("*.shard")) == shards


def test_two_audits_at_once_on_one_cache_both_succeed_and_agree(photos: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "retrain", "check", str(photos), "--format", "json"]
    command += ["--property-cache", str(tmp_path / "cache"), *PIXEL_CHECKS]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    audits = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [audit.communicate(timeout=300) for audit in audits]
    assert [audit.returncode for audit in audits] == [1, 1], [stderr for _, stderr in outputs]
    reports = [json.loads(stdout) for stdout, _ in outputs]
    assert reports[0]["findings"] == reports[1]["findings"]
    assert all(_cache_warnings(stderr.decode()) == 0 for _, stderr in outputs)
    after, _ = _audit(photos, tmp_path / "cache")
    assert after["summary"]["properties"] == {"computed": 0, "reused": 26}
    assert after["findings"] == reports[0]["findings"]


def test_the_actions_prune_step_keeps_the_saved_cache_to_the_datasets_content(photos: Path, tmp_path: Path) -> None:
    runner = tmp_path / "runner"
    cache = runner / "retrain-ci-bottlenecks"  # where gate.sh keeps the cache that actions/cache restores and saves
    _audit(photos, cache, "--bottleneck-dir", cache)
    for photo in sorted((photos / "roses").glob("*.jpg"))[:2]:
        photo.unlink()
    gate = Path(__file__).parents[1] / ".github" / "actions" / "retrain-ci" / "gate.sh"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(Path(__file__).parents[1]),
        "RUNNER_TEMP": str(runner),
        "INPUT_DATA": str(photos),
    }
    prune = subprocess.run(["bash", str(gate), "prune"], env=env, capture_output=True, text=True, timeout=300)
    assert prune.returncode == 0, prune.stderr
    assert f"{cache / PROPERTIES_FOLDER}: removed 2 entries" in prune.stdout
    warm, _ = _audit(photos, cache, "--bottleneck-dir", cache)
    assert warm["summary"]["properties"] == {"computed": 0, "reused": 24}
