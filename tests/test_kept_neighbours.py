"""Neighbour lists kept between audits (issue 29): a pull request's re-audit searches only the photos that changed, and
finds the lists a cold search finds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import datacheck.neighbours
from datacheck.audit import audit_data, audit_dataset
from datacheck.neighbours import KEPT_SNAPSHOTS, KeptNeighbours, Neighbours
from datacheck.settings import AuditSettings
from retrain.core.settings import ModuleSettings
from retrain.training.bottlenecks import bottleneck_source
from tests.conftest import copy_dataset, sample_photos

COUNT = 12  # near_duplicates' search


@pytest.fixture(scope="module")
def sample_bottlenecks(flowers_sample: Path, bottleneck_dir: Path) -> np.ndarray:
    """The real backbone's bottlenecks of the 200 sample photos."""
    settings = AuditSettings(module=ModuleSettings(bottleneck_dir=bottleneck_dir), only=("near_duplicates",))
    data = audit_data(flowers_sample, settings, bottlenecks=bottleneck_source(settings.module))
    return data.bottlenecks[data.images["error"].isna().to_numpy()]


@pytest.fixture(scope="module")
def vectors(sample_bottlenecks: np.ndarray) -> np.ndarray:
    """3,000 bottlenecks derived from the real ones as benchmarks/audit_scale.py derives them: each photo's features
    scaled by noise, a tenth of them near copies of the row before, and a few exact copies."""
    rng = np.random.default_rng(0)
    photos = sample_bottlenecks[rng.integers(0, len(sample_bottlenecks), 3000)]
    photos = photos * np.exp(rng.uniform(0.8, 1.5, (3000, 1)) * rng.standard_normal(photos.shape))
    copies = np.sort(rng.choice(np.arange(1, 3000), 300, replace=False))
    photos[copies] = photos[copies - 1] * np.exp(rng.uniform(0.2, 0.5, (300, 1)) * rng.standard_normal((300, 1280)))
    photos[2990:] = photos[:10]
    return photos.astype(np.float32)


def _kept(root: Path, vectors: np.ndarray) -> tuple[Neighbours, dict[str, int]]:
    kept = KeptNeighbours(root)
    found = Neighbours.of(vectors, COUNT, kept)
    assert not kept.warnings
    return found, kept.counts


def _assert_same(found: Neighbours, expected: Neighbours) -> None:
    assert np.array_equal(found.indices, expected.indices)
    assert np.array_equal(found.similarities, expected.similarities)


def test_a_pull_requests_re_audit_searches_only_its_new_photos_and_finds_the_cold_lists(
    vectors: np.ndarray, tmp_path: Path
) -> None:
    """Main's audit keeps its lists; each pull request off main (40 photos spread through the table) searches 40 rows
    and gets exactly the lists a cold search gets, however many pull requests were audited in between."""
    rng = np.random.default_rng(1)
    pull_requests = [np.sort(rng.choice(len(vectors), 40, replace=False)) for _ in range(KEPT_SNAPSHOTS + 1)]
    main = np.setdiff1d(np.arange(len(vectors)), np.concatenate(pull_requests))
    _, first = _kept(tmp_path, vectors[main])
    assert first == {"searched": len(main), "reused": 0}
    for added in pull_requests:
        rows = np.sort(np.concatenate([main, added]))
        found, counts = _kept(tmp_path, vectors[rows])
        assert counts == {"searched": 40, "reused": len(main)}
        _assert_same(found, Neighbours.of(vectors[rows], COUNT))
    snapshots = list((tmp_path / "neighbour-lists").glob("*/*/*"))
    assert len(snapshots) == KEPT_SNAPSHOTS


def test_photos_removed_and_added_at_once_search_the_rows_that_listed_a_removed_one(
    vectors: np.ndarray, tmp_path: Path
) -> None:
    """Rows whose list named a removed photo are searched again; the rest keep their lists, merged with the new."""
    rng = np.random.default_rng(2)
    added = rng.choice(len(vectors), 40, replace=False)
    before = np.setdiff1d(np.arange(len(vectors)), added)
    after = np.sort(np.concatenate([rng.choice(before, len(before) - 25, replace=False), added]))
    _kept(tmp_path, vectors[before])
    found, counts = _kept(tmp_path, vectors[after])
    assert 40 < counts["searched"] < 600, counts
    _assert_same(found, Neighbours.of(vectors[after], COUNT))
    again, counts = _kept(tmp_path, vectors[after])
    assert counts == {"searched": 0, "reused": len(after)}
    _assert_same(again, found)


def test_copies_of_one_vector_are_rows_of_their_own(vectors: np.ndarray, tmp_path: Path) -> None:
    """Five more exact copies of kept rows (a photo copied in): ties ordered as the cold search orders them."""
    _kept(tmp_path, vectors)
    rows = np.sort(np.concatenate([np.arange(len(vectors)), [0, 0, 5, 2995, 7]]))
    found, counts = _kept(tmp_path, vectors[rows])
    assert counts == {"searched": 5, "reused": len(vectors)}
    _assert_same(found, Neighbours.of(vectors[rows], COUNT))


def test_a_damaged_snapshot_is_searched_again_with_a_warning(vectors: np.ndarray, tmp_path: Path) -> None:
    _kept(tmp_path, vectors[:-40])
    (shard,) = (tmp_path / "neighbour-lists").rglob("*.shard")
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    kept = KeptNeighbours(tmp_path)
    found = Neighbours.of(vectors, COUNT, kept)
    assert kept.counts == {"searched": len(vectors), "reused": 0}
    assert len(kept.warnings) == 1 and "searched again" in kept.warnings[0]
    _assert_same(found, Neighbours.of(vectors, COUNT))


def test_above_the_exact_limit_a_re_audit_is_as_close_to_exact_as_a_cold_graph_search(
    vectors: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the graph search forced on: the kept rows keep their graph lists (merged with the new rows), the 40 new
    rows get exact ones, so the re-audit's recall of the exact lists is at least the cold graph search's."""
    exact = Neighbours.of(vectors, COUNT)
    monkeypatch.setattr(datacheck.neighbours, "EXACT_LIMIT", 1000)
    added = np.random.default_rng(3).choice(len(vectors), 40, replace=False)
    _kept(tmp_path, vectors[np.setdiff1d(np.arange(len(vectors)), added)])
    found, counts = _kept(tmp_path, vectors)
    cold = Neighbours.of(vectors, COUNT)
    assert counts == {"searched": 40, "reused": len(vectors) - 40}

    def recall(lists: Neighbours) -> float:
        return np.mean([len(set(a) & set(b)) / COUNT for a, b in zip(lists.indices, exact.indices, strict=True)])

    assert recall(cold) >= 0.7, recall(cold)  # the far end of a list is where a graph search errs
    assert recall(found) >= recall(cold) - 0.002, (recall(found), recall(cold))
    assert np.array_equal(found.indices[added], exact.indices[added])


def test_a_re_audit_with_photos_added_finds_what_a_cold_audit_finds(
    flowers_sample: Path, bottleneck_dir: Path, sample_bottlenecks: np.ndarray, tmp_path: Path
) -> None:
    """The real audit: 60 photos, then 4 more (two edited copies of photos there, two new ones). The re-audit reuses
    the kept lists (no full search) and its findings equal a cold audit's."""
    photos = {label: sample_photos(flowers_sample, label, 16) for label in ("daisy", "roses", "tulips")}
    root = copy_dataset(tmp_path / "photos", {label: files[:-2] for label, files in photos.items()})
    module = ModuleSettings(bottleneck_dir=bottleneck_dir)

    def audit(cache: Path):
        settings = AuditSettings(module=module, property_cache=cache, only=("near_duplicates", "outlier"))
        return audit_dataset(root, settings, bottlenecks=bottleneck_source(module))

    audit(tmp_path / "cache")
    copy_dataset(root, {"tulips": photos["tulips"][-2:]})
    for source in photos["daisy"][:2]:
        with Image.open(source) as image:
            image.crop((10, 10, image.width - 30, image.height - 20)).save(root / "daisy" / f"crop {source.name}")
    searches = []
    cold_search = datacheck.neighbours.nearest
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datacheck.neighbours, "nearest", lambda *args: searches.append(args) or cold_search(*args))
        warm = audit(tmp_path / "cache")
    assert not searches
    assert warm.summary()["neighbours"] == {"searched": 4, "reused": 42}  # what the audit JSON says it searched
    cold = audit(tmp_path / "fresh cache")
    assert cold.summary()["neighbours"] == {"searched": 46, "reused": 0}
    assert [finding.fingerprint for finding in warm.findings] == [finding.fingerprint for finding in cold.findings]
    assert [finding.details for finding in warm.findings] == [finding.details for finding in cold.findings]
    assert any(finding.check == "near_duplicates" for finding in warm.findings)
