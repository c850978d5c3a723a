"""The same picture more than once: byte-identical files, copies found by perceptual hash or by bottleneck, and copies
across splits.

Memory per image, beyond its row of the audit table: grouping by content key, about 100 bytes; the picture groups
(near_duplicates and split_leakage share them), about 200 bytes for the hash search (its code, a key per chunk, its
group) and 16 bytes per pair found, and with bottlenecks a unit-length copy of its vector (5 KB at 1280 dimensions),
its 12 neighbours (144 bytes) and, above 20,000 photos, a projected copy and graph links (about 1.2 KB)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from datacheck.findings import Finding, Severity
from datacheck.neighbours import Neighbours, hash_pairs
from datacheck.registry import AuditData, Check, Need, register
from datacheck.settings import AuditSettings

# A photo's typical similarity to others: the mean over this many nearest neighbours after its nearest (which may be
# its twin). A pair is one picture when it is much closer than either photo is to its neighbourhood, so a daisy among
# many look-alike daisies needs more than a daisy alone in its corner of the feature space.
NEIGHBOURS = 10
LISTED_PAIRS = 20
# Smaller than the perceptual hash's 8x8 grid of frequencies, or longer than 8:1 (far beyond any panorama of
# flowers-dev), an image is resampled into a square hash that no longer tells it from other such images.
MIN_HASH_SIDE = 8
MAX_HASH_ASPECT = 8
SIGNAL_WORDS = {
    "hash": "perceptual hash (re-encoded, resized or retouched)",
    "embedding": "bottleneck (cropped, mirrored, recoloured, rotated, or one burst of shots)",
    "both": "perceptual hash and bottleneck",
}


@dataclass(frozen=True)
class PictureGroup:
    """Images of one picture, and the pairs that joined them: which signal matched each (hash, embedding or both)."""

    images: pd.DataFrame
    pairs: list[dict]  # enough to join the group: for n copies of one hash, n - 1 of them

    def matched_by(self) -> list[str]:
        return sorted({pair["signal"] for pair in self.pairs})

    def listed_pairs(self) -> list[dict]:
        """The pairs a finding lists: a few, so that a group of thousands keeps its report small."""
        return self.pairs[:LISTED_PAIRS]


def exact_groups(images: pd.DataFrame) -> list[pd.DataFrame]:
    """Readable images sharing one content key, two or more per group."""
    return [group for _, group in images.groupby("sha1", sort=False) if len(group) > 1]


def picture_groups(data: AuditData) -> list[PictureGroup]:
    """The audit's groups of one picture, computed once and shared by the checks that report them.

    The perceptual hash always takes part; the bottlenecks too when the audit has them (a check that needs them was
    selected, as by default), so an audit of pixel checks only still runs without TensorFlow.
    """
    if "picture_groups" not in data.derived:
        images = data.readable()
        neighbours = None
        if data.bottlenecks is not None and len(images) > 1:
            neighbours = data.bottleneck_neighbours(NEIGHBOURS + 2)
        data.derived["picture_groups"] = group_pictures(images, neighbours, data.settings)
    return data.derived["picture_groups"]


def group_pictures(images: pd.DataFrame, neighbours: Neighbours | None, settings: AuditSettings) -> list[PictureGroup]:
    """Group ``images`` (path and phash columns) by perceptual hash, and by bottleneck where their ``neighbours``
    (rows are positions in ``images``) are given."""
    hashable = _hash_is_meaningful(images)
    rows = np.flatnonzero(hashable)
    pairs = {
        (int(rows[i]), int(rows[j])) for i, j in _hash_pairs(images["phash"].iloc[rows], settings.near_duplicate_bits)
    }
    judge = _EmbeddingJudge(neighbours, settings) if neighbours is not None else None
    if judge is not None:
        pairs |= judge.pairs()
    roots = np.array(_union(len(images), pairs))
    hashes = [int(h, 16) for h in images["phash"]]
    paths = images["path"].to_numpy()
    pairs_of: dict[int, list[dict]] = {}
    for i, j in sorted(pairs):
        bits = (hashes[i] ^ hashes[j]).bit_count()
        similarity, by_embedding = judge.judge(i, j) if judge is not None else (None, False)
        by_hash = bits <= settings.near_duplicate_bits and hashable[i] and hashable[j]
        pairs_of.setdefault(int(roots[i]), []).append(
            {
                "paths": [paths[i], paths[j]],
                "signal": "both" if by_hash and by_embedding else "hash" if by_hash else "embedding",
                "hash_bits": bits,
                "similarity": similarity,
            }
        )
    rows_of: dict[int, list[int]] = {}
    for row in np.flatnonzero(np.isin(roots, list(pairs_of))):
        rows_of.setdefault(int(roots[row]), []).append(row)
    return [PictureGroup(images.iloc[rows_of[root]], found) for root, found in pairs_of.items()]


def _hash_is_meaningful(images: pd.DataFrame) -> np.ndarray:
    """Rows whose perceptual hash describes the picture: one too small or too long and thin to resample into the hash's
    square grid hashes alike whatever it shows (a 1x1 dot and a 20000x10 strip), so it is never paired by hash.

    A table without sizes (as benchmarks build) is taken as all ordinary photos.
    """
    if "width" not in images or "height" not in images:
        return np.ones(len(images), bool)
    short = np.minimum(images["width"], images["height"]).to_numpy(float)
    long = np.maximum(images["width"], images["height"]).to_numpy(float)
    return (short >= MIN_HASH_SIDE) & (long <= short * MAX_HASH_ASPECT)


def _union(count: int, pairs: set[tuple[int, int]]) -> list[int]:
    """Each row's group, as the row that represents it: union-find over the pairs."""
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        parent[root(i)] = root(j)
    return [root(i) for i in range(count)]


def _hash_pairs(phashes: pd.Series, max_bits: int) -> list[tuple[int, int]]:
    """Pairs of rows (positions) whose perceptual hashes are at most ``max_bits`` apart, enough to join every group.

    Rows sharing a hash are chained without comparing them, so only distinct hashes are searched (datacheck.neighbours:
    multi-index hashing, no all-pairs matrix): thousands of images of one hash cost one search, not thousands squared.
    """
    if phashes.empty:
        return []
    hash_of_row, hashes = pd.factorize(phashes)
    first = np.full(len(hashes), -1)
    pairs = []
    for row, code in enumerate(hash_of_row):
        if first[code] >= 0:
            pairs.append((int(first[code]), row))
        else:
            first[code] = row
    codes = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    close = first[hash_pairs(codes, max_bits)]
    return pairs + list(zip(close[:, 0].tolist(), close[:, 1].tolist(), strict=True))


class _EmbeddingJudge:
    """Near-duplicates by bottleneck: cosine similarity at least ``near_duplicate_similarity`` and at least
    ``near_duplicate_margin`` above the two photos' typical similarity to their neighbours (datacheck.neighbours:
    exact search, no all-pairs matrix). Photos without a bottleneck (it failed) take no part.
    """

    def __init__(self, nearest: Neighbours, settings: AuditSettings) -> None:
        self.settings = settings
        self.rows, self.unit = nearest.rows, nearest.unit
        self.position = {int(row): index for index, row in enumerate(self.rows)}
        similarities, neighbours = nearest.similarities, nearest.indices
        beyond = similarities[:, 2:]  # past itself and its nearest
        self.typical = beyond.mean(axis=1) if beyond.shape[1] else np.zeros(len(self.rows), np.float32)
        self.found: dict[tuple[int, int], float] = {}
        for a, b in zip(*np.nonzero(neighbours >= 0), strict=True):
            other = int(neighbours[a, b])
            if other != a and self._matches(float(similarities[a, b]), a, other):
                pair = tuple(sorted((int(self.rows[a]), int(self.rows[other]))))
                self.found[pair] = float(similarities[a, b])

    def pairs(self) -> set[tuple[int, int]]:
        """Pairs of rows (positions in the images) that the bottlenecks say are one picture: a photo's near-duplicates
        are among its nearest neighbours."""
        return set(self.found)

    def judge(self, i: int, j: int) -> tuple[float | None, bool]:
        """The cosine similarity of rows ``i`` and ``j`` (None when either has no bottleneck) and whether it matches."""
        if (i, j) in self.found:
            return round(self.found[i, j], 4), True
        if i not in self.position or j not in self.position:
            return None, False
        a, b = self.position[i], self.position[j]
        similarity = float(self.unit[a] @ self.unit[b])
        return round(similarity, 4), self._matches(similarity, a, b)

    def _matches(self, similarity: float, a: int, b: int) -> bool:
        margin = similarity - (self.typical[a] + self.typical[b]) / 2
        return similarity >= self.settings.near_duplicate_similarity and margin >= self.settings.near_duplicate_margin


def _where(group: pd.DataFrame) -> str:
    classes = _classes(group)
    return f"class {classes[0]!r}" if len(classes) == 1 else f"classes {', '.join(map(repr, classes))}"


def _classes(group: pd.DataFrame) -> list[str]:
    return sorted(group["label"].unique())


def _signals(group: PictureGroup) -> str:
    return " and ".join(SIGNAL_WORDS[signal] for signal in group.matched_by())


@register
class ExactDuplicates(Check):
    """Copies weigh one photo several times in training; copies in two classes are conflicting_labels instead.
    Memory per image: about 100 bytes beyond the audit table (grouping by content key)."""

    id = "exact_duplicates"
    groups_copies = True

    def run(self, data: AuditData) -> list[Finding]:
        return [
            self.finding(
                Severity.WARNING,
                group["path"],
                f"{len(group)} identical files in class {group['label'].iloc[0]!r}: keep one",
                copies=len(group),
            )
            for group in exact_groups(data.readable())
            if group["label"].nunique() == 1
        ]


@register
class ConflictingLabels(Check):
    """One file in two classes teaches the model both answers for the same picture. Memory per image: about 100 bytes
    beyond the audit table (grouping by content key)."""

    id = "conflicting_labels"
    groups_copies = True
    label_bound = True

    def run(self, data: AuditData) -> list[Finding]:
        return [
            self.finding(
                Severity.ERROR,
                group["path"],
                f"the same file is in classes {', '.join(map(repr, _classes(group)))}: keep it in the right class only",
                classes=_classes(group),
            )
            for group in exact_groups(data.readable())
            if group["label"].nunique() > 1
        ]


@register
class NearDuplicates(Check):
    """Copies that byte comparison misses: re-encoded or resized (perceptual hash), cropped, mirrored, recoloured or
    shot in one burst (bottleneck, when the audit has them). Memory per image: about 200 bytes without bottlenecks,
    about 5.5 KB with them (6.5 KB above 20,000 photos): see the module's docstring."""

    id = "near_duplicates"
    needs = frozenset({Need.BETTER_WITH_BOTTLENECKS})
    groups_copies = True

    @classmethod
    def per_path(cls, details: dict[str, Any], path: str) -> list[tuple[str, Any]]:
        """Not the perceptual hashes, which say nothing to people."""
        return [(key, value) for key, value in super().per_path(details, path) if key != "perceptual_hashes"]

    def run(self, data: AuditData) -> list[Finding]:
        findings = []
        for group in picture_groups(data):
            images = group.images
            if images["sha1"].nunique() < 2:
                continue  # byte-identical copies only: exact_duplicates or conflicting_labels
            findings.append(
                self.finding(
                    Severity.WARNING,
                    images["path"],
                    f"{len(images)} photos of one picture in {_where(images)}, matched by {_signals(group)}: keep "
                    "the best one, or accept the finding if they are truly different photos",
                    classes=_classes(images),
                    matched_by=group.matched_by(),
                    pairs=group.listed_pairs(),
                    perceptual_hashes=dict(zip(images["path"], images["phash"], strict=True)),
                )
            )
        return findings


@register
class SplitLeakage(Check):
    """A copy in training lets the model score on its twin in validation or testing: the score overstates accuracy.
    Memory per image: near_duplicates' picture groups, shared."""

    id = "split_leakage"
    needs = frozenset({Need.BETTER_WITH_BOTTLENECKS})
    groups_copies = True

    def run(self, data: AuditData) -> list[Finding]:
        return [
            self.finding(
                Severity.WARNING,
                group.images["path"],
                f"copies of one picture (matched by {_signals(group)}) fall in the "
                f"{' and '.join(sorted(group.images['split'].unique()))} splits, so the evaluation has seen them in "
                "training: keep one copy, or name the copies alike up to `_nohash_` (e.g. `rose7_nohash_1.jpg`, "
                "`rose7_nohash_2.jpg`) so they always share a split",
                splits=dict(zip(group.images["path"], group.images["split"], strict=True)),
                matched_by=group.matched_by(),
                pairs=group.listed_pairs(),
            )
            for group in picture_groups(data)
            if group.images["split"].nunique() > 1
        ]
