"""Near-duplicate search scales: hashes through multi-index hashing and bottlenecks through an approximate graph above a
size find the pairs the exact all-pairs search finds (issue 18, scale on one machine)."""

from __future__ import annotations

from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import datacheck.neighbours
from datacheck.audit import audit_data
from datacheck.checks.duplicates import NEIGHBOURS, _EmbeddingCandidates, _hash_pairs
from datacheck.neighbours import Neighbours
from datacheck.settings import AuditSettings
from retrain.core.settings import ModuleSettings
from retrain.training.bottlenecks import bottleneck_source


@pytest.fixture(scope="module")
def real_hashes(flowers_sample: Path) -> np.ndarray:
    """The perceptual hashes of the 200 sample photos, as 64 bits each."""
    photos = sorted(flowers_sample.rglob("*.jpg"))
    return np.array([np.frombuffer(bytes.fromhex(str(imagehash.phash(Image.open(p)))), np.uint8) for p in photos])


def _perturbed(real: np.ndarray, count: int, flips: tuple[int, int], seed: int = 0) -> list[str]:
    """``count`` hashes clustered as real ones are: a real hash with a few bits flipped each."""
    rng = np.random.default_rng(seed)
    bits = np.unpackbits(real[rng.integers(0, len(real), count)], axis=1)
    for row, flipped in enumerate(rng.integers(flips[0], flips[1] + 1, count)):
        bits[row, rng.choice(64, flipped, replace=False)] ^= 1
    return [bytes(code).hex() for code in np.packbits(bits, axis=1)]


def _all_pairs(hashes: list[str], max_bits: int) -> set[tuple[int, int]]:
    """7487a48's search: the full distance matrix of the hashes, every pair within ``max_bits``."""
    signs = 2 * np.array([np.unpackbits(np.frombuffer(bytes.fromhex(h), np.uint8)) for h in hashes], np.float32) - 1
    distances = (64 - signs @ signs.T) / 2
    return {(int(i), int(j)) for i, j in zip(*np.nonzero(distances <= max_bits), strict=True) if i < j}


@pytest.mark.parametrize("max_bits", [0, 2, 4, 10])
def test_hash_search_finds_the_pairs_of_the_all_pairs_matrix(real_hashes: np.ndarray, max_bits: int) -> None:
    """3,000 hashes derived from real photos' (1 to 8 bits flipped, some repeated): the index finds exactly the pairs
    the distance matrix found, with rows of one hash chained as before."""
    hashes = _perturbed(real_hashes, 3000, (1, 8))
    hashes += hashes[:50]  # equal hashes: chained, never compared
    found = set(_hash_pairs(pd.Series(hashes), max_bits))
    distinct = list(dict.fromkeys(hashes))
    first = {h: hashes.index(h) for h in distinct}
    expected = {(first[distinct[i]], first[distinct[j]]) for i, j in _all_pairs(distinct, max_bits)}
    expected |= {(first[h], row) for row, h in enumerate(hashes) if first[h] != row}
    assert found == expected
    assert len(expected) > 50 + (max_bits > 0) * 100


def test_hash_buckets_larger_than_a_block_find_the_pairs_of_the_all_pairs_matrix(real_hashes: np.ndarray) -> None:
    """2,000 hashes sharing their first chunk (one bucket of 2,000, compared in blocks) beside small buckets (compared
    all at once): the same pairs as the distance matrix."""
    hashes = _perturbed(real_hashes, 2000, (1, 6), seed=5)
    shared = int(hashes[0], 16) & 0x1FFF  # the first of 5 chunks at 4 bits: 13 bits
    hashes = list(dict.fromkeys(f"{(int(h, 16) & ~0x1FFF) | shared:016x}" for h in hashes))
    found = set(_hash_pairs(pd.Series(hashes), 4))
    expected = _all_pairs(hashes, 4)
    assert found == expected
    assert len(hashes) > 1024 and len(expected) > 100


@pytest.fixture(scope="module")
def sample_bottlenecks(flowers_sample: Path, bottleneck_dir: Path) -> np.ndarray:
    settings = AuditSettings(module=ModuleSettings(bottleneck_dir=bottleneck_dir), only=("near_duplicates",))
    return audit_data(flowers_sample, settings, bottlenecks=bottleneck_source(settings.module)).bottlenecks


def test_approximate_neighbours_keep_the_exact_near_duplicate_pairs(
    sample_bottlenecks: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """3,000 bottlenecks derived from the real ones (each photo's features scaled by noise, a tenth of them near
    copies of another): with the graph search forced on, at least 95% of the exact search's pairs are found, and the
    similarities reported are exact."""
    rng = np.random.default_rng(0)
    photos = sample_bottlenecks[rng.integers(0, len(sample_bottlenecks), 3000)]
    photos = photos * np.exp(rng.uniform(0.8, 1.5, (3000, 1)) * rng.standard_normal(photos.shape))
    copies = rng.choice(3000, 300, replace=False)
    photos[copies] = photos[copies - 1] * np.exp(rng.uniform(0.2, 0.5, (300, 1)) * rng.standard_normal((300, 1280)))
    settings = AuditSettings()
    exact = _EmbeddingCandidates(Neighbours.of(photos.astype(np.float32), NEIGHBOURS + 2), settings).found
    monkeypatch.setattr(datacheck.neighbours, "EXACT_LIMIT", 1000)
    approximate = _EmbeddingCandidates(Neighbours.of(photos.astype(np.float32), NEIGHBOURS + 2), settings).found
    recall = len(exact.keys() & approximate.keys()) / len(exact)
    assert len(exact) > 100
    assert recall >= 0.95, recall
    assert all(abs(approximate[pair] - exact[pair]) < 1e-4 for pair in exact.keys() & approximate.keys())
