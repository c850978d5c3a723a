"""Shortcut bias on a large dataset learns from a sample of each class chosen by content, so its cost stays that of
a few thousand photos, and a pull request moves the sample by its own photos only (issue 29)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import datacheck.checks.bias
from datacheck.checks.bias import MAX_PHOTOS, MIN_PER_CLASS, sample_by_content
from tests.conftest import run_cli, sample_photos
from tests.defects import edited, tinted


def _table(sizes: dict[str, int], start: int = 0) -> pd.DataFrame:
    labels = [label for label, size in sizes.items() for _ in range(size)]
    keys = [hashlib.sha1(f"{start + i}".encode()).hexdigest() for i in range(len(labels))]
    return pd.DataFrame(
        {"label": labels, "sha1": keys, "path": [f"{label}/{key}.jpg" for label, key in zip(labels, keys, strict=True)]}
    )


def test_a_large_table_is_sampled_in_proportion_with_every_class_kept() -> None:
    images = _table({"daisy": 6_000, "roses": 3_990, "rare": 10})
    sample = sample_by_content(images)
    counts = sample["label"].value_counts()
    assert abs(len(sample) - MAX_PHOTOS) <= MIN_PER_CLASS
    assert abs(counts["daisy"] - 0.6 * MAX_PHOTOS) <= 1 and abs(counts["roses"] - 0.399 * MAX_PHOTOS) <= 1
    assert counts["rare"] == 10  # too few to sample: all of them
    assert sample_by_content(images.iloc[::-1]).sort_index().equals(sample.sort_index())  # by content, not by order


def test_photos_added_by_a_pull_request_move_the_sample_by_about_as_many() -> None:
    main = _table({"daisy": 6_000, "roses": 4_000})
    head = pd.concat([main, _table({"daisy": 20, "roses": 20}, start=10**6)], ignore_index=True)
    before, after = set(sample_by_content(main)["path"]), set(sample_by_content(head)["path"])
    assert len(before ^ after) <= 2 * 40


def _rooms(flowers_sample: Path, dataset: Path, photos: int) -> Path:
    """The tutorial's blue room and green room: ``photos`` daisies tinted blue, as many roses tinted green."""
    for label, colour in (("daisy", (40, 60, 220)), ("roses", (40, 200, 60))):
        (dataset / label).mkdir(parents=True, exist_ok=True)
        for photo in sample_photos(flowers_sample, label, photos):
            edited(photo, dataset / label / photo.name, tinted(colour))
    return dataset


def _shortcut(dataset: Path, cache: Path) -> list[dict]:
    run = run_cli(
        "check", dataset, "--only", "shortcut_bias", "--format", "json", "--fail-on", "never",
        "--property-cache", cache, "--bottleneck-dir", cache / "bottlenecks",
    )  # fmt: skip
    assert run.exit_code == 0, run.stdout + run.stderr
    return json.loads(run.stdout)["findings"]


def test_a_shortcut_is_still_found_in_a_sample(flowers_sample: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(datacheck.checks.bias, "MAX_PHOTOS", 40)  # 60 photos: a sample of 20 a class
    (finding,) = _shortcut(_rooms(flowers_sample, tmp_path / "rooms", 30), tmp_path / "cache")
    assert finding["details"]["skill"] > 0.6


def test_a_re_audit_judges_from_the_kept_fit_unless_its_skill_is_near_the_line(
    flowers_sample: Path, tmp_path: Path, monkeypatch
) -> None:
    dataset, cache = tmp_path / "rooms", tmp_path / "cache"
    cold = _shortcut(_rooms(flowers_sample, dataset, 38), cache)
    (fit,) = cache.glob("out-of-fold/v*/*/fit-*")
    _rooms(flowers_sample, dataset, 40)  # 4 photos added (5%): judged by a forest of the 76 the fit judged
    warm = _shortcut(dataset, cache)
    assert list(cache.glob("out-of-fold/v*/*/fit-*")) == [fit]  # reused, not refitted
    assert [finding["fingerprint"] for finding in warm] == [finding["fingerprint"] for finding in cold]
    skill = warm[0]["details"]["skill"]
    monkeypatch.setenv("RETRAIN_CI_MAX_SHORTCUT_SKILL", str(skill - datacheck.checks.bias.SKILL_MARGIN / 2))
    near = _shortcut(dataset, cache)
    (refit,) = cache.glob("out-of-fold/v*/*/fit-*")
    assert refit != fit  # too near the line to trust a kept fit: every fold refitted, as a cold audit does
    assert near[0]["details"]["skill"] > skill - datacheck.checks.bias.SKILL_MARGIN / 2


@pytest.mark.parametrize("size", [10, MAX_PHOTOS])
def test_a_table_within_the_cap_is_learnt_whole(size: int) -> None:
    images = _table({"daisy": size // 2, "roses": size - size // 2})
    assert sample_by_content(images) is images
    assert np.array_equal(sample_by_content(images).index, images.index)
