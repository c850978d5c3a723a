"""The same picture more than once: byte-identical files, copies found by perceptual hash or by bottleneck, and copies
across splits.

Memory per image, beyond its row of the audit table: grouping by content key, about 100 bytes; the picture groups
(near_duplicates and split_leakage share them), about 200 bytes for the hash search (its code, a key per chunk, its
group) and 16 bytes per pair found, and with bottlenecks a unit-length copy of its vector (5 KB at 1280 dimensions),
its 12 neighbours (144 bytes) and, above 20,000 photos, a projected copy and graph links (about 1.2 KB)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from datacheck.findings import Finding, Severity
from datacheck.neighbours import Neighbours, hash_pairs
from datacheck.picture_match import ONE_PICTURE, ONE_SCENE, KeptMatches, PairMatch, PictureMatcher
from datacheck.properties import property_cache
from datacheck.registry import AuditData, Check, Need, register
from datacheck.settings import AuditSettings
from retrain.core.per_image import thread_map

# A photo's typical similarity to others: the mean over this many nearest neighbours after its nearest (which may be
# its twin). A candidate pair is much closer than either photo is to its neighbourhood, so a daisy among many look-alike
# daisies needs more than a daisy alone in its corner of the feature space.
NEIGHBOURS = 10
LISTED_PAIRS = 20
# Smaller than the perceptual hash's 8x8 grid of frequencies, or longer than 8:1 (far beyond any panorama of
# flowers-dev), an image is resampled into a square hash that no longer tells it from other such images.
MIN_HASH_SIDE = 8
MAX_HASH_ASPECT = 8
FOUND_BY = {"hash": "perceptual hash", "embedding": "bottleneck"}


@dataclass(frozen=True)
class PictureGroup:
    """Images joined by verified pairs (their paths, labels, splits, content keys and perceptual hashes, in table
    order: plain tuples, as a large dataset has tens of thousands of groups), and those pairs: each says its ``kind``
    (one picture or one scene), what found it (``signal``: hash, embedding or both) and the geometric evidence
    (inliers, detail correlation, mirrored)."""

    paths: tuple[str, ...]
    labels: tuple[str, ...]
    splits: tuple[str, ...]
    keys: tuple[str, ...]
    phashes: tuple[str, ...]
    pairs: list[dict]  # enough to join the group: for n copies of one hash, n - 1 of them

    def matched_by(self) -> list[str]:
        return sorted({pair["signal"] for pair in self.pairs})

    def kinds(self) -> list[str]:
        return sorted({pair["kind"] for pair in self.pairs})

    def listed_pairs(self) -> list[dict]:
        """The pairs a finding lists: a few, so that a group of thousands keeps its report small."""
        return self.pairs[:LISTED_PAIRS]


def exact_groups(images: pd.DataFrame) -> list[pd.DataFrame]:
    """Readable images sharing one content key, two or more per group: only the rows with a twin are grouped, so a
    dataset of 100,000 distinct photos costs one pass, not 100,000 groups."""
    copies = images[images["sha1"].duplicated(keep=False)]
    return [group for _, group in copies.groupby("sha1", sort=False)]


def picture_groups(data: AuditData) -> list[PictureGroup]:
    """Groups of one picture (edited or re-encoded copies), joined by pairs the geometric match confirms."""
    return _groups(data, {ONE_PICTURE})


def scene_groups(data: AuditData) -> list[PictureGroup]:
    """Groups of one picture or one scene (shots of one subject from one shoot): what leaks between splits."""
    return _groups(data, {ONE_PICTURE, ONE_SCENE})


def _groups(data: AuditData, kinds: set[str]) -> list[PictureGroup]:
    key = f"groups of {sorted(kinds)}"
    if key not in data.derived:
        images = data.readable()
        data.derived[key] = group_pairs(images, [pair for pair in verified_pairs(data) if pair["kind"] in kinds])
    return data.derived[key]


def verified_pairs(data: AuditData) -> list[dict]:
    """Every candidate pair (perceptual hash, and bottleneck when the audit has them) that the geometric match
    confirms, computed once per audit and shared by near_duplicates and split_leakage."""
    if "verified_pairs" not in data.derived:
        images = data.readable()
        neighbours = None
        if data.bottlenecks is not None and len(images) > 1:
            neighbours = data.bottleneck_neighbours(NEIGHBOURS + 2)
        candidates = candidate_pairs(images, neighbours, data.settings)
        matcher = PictureMatcher(
            data.scan.root,
            min_inliers=data.settings.near_duplicate_inliers,
            min_detail_correlation=data.settings.near_duplicate_detail,
        )
        kept = KeptMatches(property_cache(data.settings).directory.parent, matcher)
        verified, data.pair_counts = verify_pairs(images, candidates, matcher, data.settings, kept)
        data.derived["verified_pairs"] = verified
    return data.derived["verified_pairs"]


def candidate_pairs(
    images: pd.DataFrame, neighbours: Neighbours | None, settings: AuditSettings
) -> dict[tuple[int, int], dict]:
    """Pairs of rows (positions in ``images``) that look alike, each with what found it: perceptual hashes within
    ``near_duplicate_bits``, or bottleneck neighbours (``neighbours``' rows are positions in ``images``)."""
    hashable = _hash_is_meaningful(images)
    rows = np.flatnonzero(hashable)
    hashes = [int(h, 16) for h in images["phash"]]
    by_hash = {
        tuple(sorted((int(rows[i]), int(rows[j]))))
        for i, j in _hash_pairs(images["phash"].iloc[rows], settings.near_duplicate_bits)
    }
    by_embedding = _EmbeddingCandidates(neighbours, settings).found if neighbours is not None else {}
    candidates = {}
    for pair in sorted(by_hash | set(by_embedding)):
        i, j = pair
        signal = "both" if pair in by_hash and pair in by_embedding else "hash" if pair in by_hash else "embedding"
        candidates[pair] = {
            "signal": signal,
            "hash_bits": (hashes[i] ^ hashes[j]).bit_count(),
            "similarity": round(by_embedding[pair], 4) if pair in by_embedding else None,
        }
    return candidates


def verify_pairs(
    images: pd.DataFrame,
    candidates: dict[tuple[int, int], dict],
    matcher: PictureMatcher,
    settings: AuditSettings,
    kept: KeptMatches | None = None,
) -> tuple[list[dict], dict[str, int]]:
    """The candidates that are one picture or one scene, as pairs with their evidence, and how many pairs were matched
    and how many taken from ``kept`` (earlier audits' matches). Byte-identical files need no match; where local
    features cannot judge (a tiny or flat image), a perceptual-hash match alone makes one picture."""
    paths, keys = images["path"].to_numpy(), images["sha1"].to_numpy()
    different = [(index, (i, j)) for index, (i, j) in enumerate(candidates) if keys[i] != keys[j]]
    pair_keys = {index: kept.key(keys[i], keys[j]) for index, (i, j) in different} if kept else {}
    known = kept.read(list(pair_keys.values())) if kept else {}
    matches = {index: known[pair_keys[index]] for index, _ in different if pair_keys.get(index) in known}
    to_match = [(index, (paths[i], paths[j])) for index, (i, j) in different if index not in matches]
    matched = dict(thread_map(matcher.match, to_match))  # in candidate order: a photo's pairs share its keypoints
    matches.update(matched)
    if kept:
        kept.keep({pair_keys[index]: match for index, match in matched.items()}, list(pair_keys.values()))
    verified = []
    for index, ((i, j), found) in enumerate(candidates.items()):
        match = matches.get(index, PairMatch(ONE_PICTURE, detail_correlation=1.0))  # byte-identical: no match needed
        if match.kind is None and found["hash_bits"] <= settings.near_duplicate_bits:
            match = PairMatch(ONE_PICTURE)
        if match.kind in (ONE_PICTURE, ONE_SCENE):
            verified.append(
                {
                    "paths": [paths[i], paths[j]],
                    "kind": match.kind,
                    **found,
                    "inliers": match.inliers,
                    "detail_correlation": match.detail_correlation,
                    "mirrored": match.mirrored,
                }
            )
    return verified, {"matched": len(matched), "reused": len(different) - len(matched)}


def group_pairs(images: pd.DataFrame, pairs: list[dict]) -> list[PictureGroup]:
    """Groups of ``images`` joined by ``pairs`` (union-find), each with the pairs that joined it."""
    paths = images["path"].tolist()
    row_of = {path: row for row, path in enumerate(paths)}
    edges = {(row_of[pair["paths"][0]], row_of[pair["paths"][1]]) for pair in pairs}
    roots = np.array(_union(len(images), edges))
    pairs_of: dict[int, list[dict]] = {}
    for pair in pairs:
        pairs_of.setdefault(int(roots[row_of[pair["paths"][0]]]), []).append(pair)
    rows_of: dict[int, list[int]] = {}
    for row in np.flatnonzero(np.isin(roots, list(pairs_of))).tolist():
        rows_of.setdefault(int(roots[row]), []).append(row)
    columns = [paths, *(images[name].tolist() for name in ("label", "split", "sha1", "phash"))]
    return [
        PictureGroup(*(tuple(column[row] for row in rows_of[root]) for column in columns), found)
        for root, found in pairs_of.items()
    ]


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
    first = np.empty(len(hashes), np.int64)
    first[hash_of_row[::-1]] = np.arange(len(hash_of_row))[::-1]  # each hash's first row
    repeated = np.flatnonzero(first[hash_of_row] != np.arange(len(hash_of_row)))
    codes = np.array([int(h, 16) for h in hashes.tolist()], dtype=np.uint64)  # a list: iterating Arrow is slow
    close = first[hash_pairs(codes, max_bits)]
    pairs = np.concatenate([np.stack([first[hash_of_row[repeated]], repeated], axis=1), close])
    return list(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist(), strict=True))


class _EmbeddingCandidates:
    """Candidate pairs by bottleneck: cosine similarity at least ``near_duplicate_similarity`` and at least
    ``near_duplicate_margin`` above the two photos' typical similarity to their neighbours (datacheck.neighbours:
    exact search, no all-pairs matrix). Photos without a bottleneck (it failed) take no part."""

    def __init__(self, nearest: Neighbours, settings: AuditSettings) -> None:
        rows, similarities, neighbours = nearest.rows, nearest.similarities, nearest.indices
        beyond = similarities[:, 2:]  # past itself and its nearest
        typical = beyond.mean(axis=1) if beyond.shape[1] else np.zeros(len(rows), np.float32)
        listed = neighbours >= 0
        others = np.where(listed, neighbours, 0)
        close = similarities.astype(np.float64)  # the similarity is compared in double precision, the margin in single
        margins = similarities - (typical[:, None] + typical[others]) / 2
        kept = listed & (others != np.arange(len(rows))[:, None])
        kept &= (close >= settings.near_duplicate_similarity) & (margins >= settings.near_duplicate_margin)
        self.found: dict[tuple[int, int], float] = {}
        for a, b in zip(*np.nonzero(kept), strict=True):  # row by row, as a pair's later listing wins
            self.found[tuple(sorted((int(rows[a]), int(rows[others[a, b]]))))] = float(close[a, b])


def _where(labels: Iterable[str]) -> str:
    classes = _classes(labels)
    return f"class {classes[0]!r}" if len(classes) == 1 else f"classes {', '.join(map(repr, classes))}"


def _classes(labels: Iterable[str]) -> list[str]:
    return sorted(set(labels))


def _found_by(group: PictureGroup) -> str:
    """What found the group's pairs, in words: each signal once (a pair found by both counts for each)."""
    signals = {
        name for signal in group.matched_by() for name in (("hash", "embedding") if signal == "both" else (signal,))
    }
    return " and ".join(FOUND_BY[signal] for signal in sorted(signals, key=list(FOUND_BY).index))


def _how(group: PictureGroup) -> str:
    """How the copies differ, as far as the match tells."""
    mirrored = any(pair["mirrored"] for pair in group.pairs)
    return "mirrored or edited copies" if mirrored else "edited, cropped or re-encoded copies"


@register
class ExactDuplicates(Check):
    """Copies weigh one photo several times in training; copies in two classes are conflicting_labels instead.
    Memory per image: about 100 bytes beyond the audit table (grouping by content key)."""

    id = "exact_duplicates"
    advice = "Identical files weigh one photo several times: keep one of each."
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
    advice = "One file in several classes: keep it in the right class only."
    groups_copies = True
    label_bound = True

    def run(self, data: AuditData) -> list[Finding]:
        return [
            self.finding(
                Severity.ERROR,
                group["path"],
                f"the same file is in classes {', '.join(map(repr, _classes(group['label'])))}: keep it in the right "
                "class only",
                classes=_classes(group["label"]),
            )
            for group in exact_groups(data.readable())
            if group["label"].nunique() > 1
        ]


class LookAlikeCheck(Check):
    """Findings that are groups joined by verified look-alike pairs: drawn, badged and sorted by their pairs."""

    @classmethod
    def highlights(cls, details: dict[str, Any]) -> list[tuple[str, Any]]:
        return _highlighted_pairs(details)

    @classmethod
    def describe(cls, details: dict[str, Any]) -> list[tuple[str, Any]]:
        return _described_pairs(details)

    @classmethod
    def badges(cls, details: dict[str, Any]) -> list[str]:
        return list(details.get("kinds", []))

    @classmethod
    def score(cls, details: dict[str, Any]) -> float | None:
        return _closest_pair(details)


@register
class NearDuplicates(LookAlikeCheck):
    """Copies that byte comparison misses: re-encoded, resized, cropped, mirrored, rotated or recoloured. Perceptual
    hashes and bottleneck neighbours (when the audit has them) propose look-alike pairs; a pair is one picture only
    when its details match point for point (datacheck.picture_match), so two gerberas or two sunflower fields are never
    called copies, and two shots of one scene are left to split_leakage. Memory per image: about 200 bytes without
    bottlenecks, about 5.5 KB with them (6.5 KB above 20,000 photos): see the module's docstring; the match keeps the
    keypoints of at most 256 photos (about 80 MB)."""

    id = "near_duplicates"
    advice = "Edited or re-encoded copies of one picture: keep the best one."
    needs = frozenset({Need.BETTER_WITH_BOTTLENECKS})
    groups_copies = True

    @classmethod
    def per_path(cls, details: dict[str, Any], path: str) -> list[tuple[str, Any]]:
        """Not the perceptual hashes, which say nothing to people."""
        return [(key, value) for key, value in super().per_path(details, path) if key != "perceptual_hashes"]

    def run(self, data: AuditData) -> list[Finding]:
        findings = []
        for group in picture_groups(data):
            if len(set(group.keys)) < 2:
                continue  # byte-identical copies only: exact_duplicates or conflicting_labels
            findings.append(
                self.finding(
                    Severity.WARNING,
                    group.paths,
                    f"{len(group.paths)} photos are one picture in {_where(group.labels)} ({_how(group)}: found by "
                    f"{_found_by(group)}, their details match point for point): keep the best one",
                    classes=_classes(group.labels),
                    kinds=group.kinds(),
                    matched_by=group.matched_by(),
                    pairs=group.listed_pairs(),
                    perceptual_hashes=dict(zip(group.paths, group.phashes, strict=True)),
                )
            )
        return findings


@register
class SplitLeakage(LookAlikeCheck):
    """A copy in training lets the model score on its twin in validation or testing: the score overstates accuracy.
    So does another shot of one scene (a burst, a photo shoot), which is no duplicate to delete but must share a split
    with its siblings. Memory per image: near_duplicates' verified pairs, shared."""

    id = "split_leakage"
    advice = "Keep one copy, or name the shots alike up to _nohash_ to share a split."
    needs = frozenset({Need.BETTER_WITH_BOTTLENECKS})
    groups_copies = True

    def run(self, data: AuditData) -> list[Finding]:
        return [
            self.finding(
                Severity.WARNING,
                group.paths,
                f"{_leaked(group)} fall in the {' and '.join(sorted(set(group.splits)))} splits, so the "
                f"evaluation has seen them in training: {_leak_advice(group)}",
                splits=dict(zip(group.paths, group.splits, strict=True)),
                kinds=group.kinds(),
                matched_by=group.matched_by(),
                pairs=group.listed_pairs(),
            )
            for group in scene_groups(data)
            if len(set(group.splits)) > 1
        ]


def _leaked(group: PictureGroup) -> str:
    if group.kinds() == [ONE_PICTURE]:
        return f"{len(group.paths)} copies of one picture ({_how(group)})"
    return f"{len(group.paths)} photos of one scene (shots of one subject, as in a burst or a photo shoot)"


def _leak_advice(group: PictureGroup) -> str:
    nohash = "name them alike up to `_nohash_` (`rose7_nohash_1.jpg`, `rose7_nohash_2.jpg`) to keep them in one split"
    return f"keep one copy, or {nohash}" if group.kinds() == [ONE_PICTURE] else nohash


def _highlighted_pairs(details: dict[str, Any]) -> list[tuple[str, Any]]:
    """What the group is, what found it and how close its pairs are (a range over several pairs); empty values are
    left out by the report."""
    pairs = details.get("pairs", [])
    signals = {
        name for signal in details.get("matched_by", []) for name in (FOUND_BY if signal == "both" else [signal])
    }
    points = _spread([pair.get("inliers") or None for pair in pairs], "{}")  # 0: identical, or a hash match
    return [
        ("", " and ".join(details.get("kinds", []))),
        ("similarity", _spread([pair.get("similarity") for pair in pairs], "{:.2f}")),
        ("", f"{points} points match" if points else ""),
        ("detail", _spread([pair.get("detail_correlation") for pair in pairs], "{:.2f}")),
        ("found by", " and ".join(FOUND_BY[signal] for signal in FOUND_BY if signal in signals)),
        ("", "mirrored" if any(pair.get("mirrored") for pair in pairs) else ""),
    ]


def _spread(values: list[Any], shown: str) -> str:
    """``0.84`` or ``0.81-0.90``: the range of the values given (None: not measured)."""
    measured = sorted(value for value in values if value is not None)
    if not measured:
        return ""
    low, high = shown.format(measured[0]), shown.format(measured[-1])
    return low if low == high else f"{low}-{high}"


def _closest_pair(details: dict[str, Any]) -> float | None:
    """The strongest evidence of a group: its closest pair's detail correlation (1 for identical files)."""
    correlations = [pair["detail_correlation"] for pair in details.get("pairs", []) if pair.get("detail_correlation")]
    return max(correlations, default=None)


def _described_pairs(details: dict[str, Any]) -> list[tuple[str, Any]]:
    """Each listed pair as a person reads it: the two files, what they are to each other and the evidence."""
    described = []
    for pair in details.get("pairs", []):
        first, second = (path.rsplit("/", 1)[-1] for path in pair["paths"])
        evidence = f"{pair['inliers']} keypoints agree" if pair.get("inliers") else "identical or hash match"
        if pair.get("detail_correlation") is not None and pair.get("inliers"):
            evidence += f", detail correlation {pair['detail_correlation']:.2f}"
        if pair.get("mirrored"):
            evidence += ", mirrored"
        evidence += f"; found by {_found_by_pair(pair)}"
        described.append((f"{first} ~ {second}", f"{pair['kind']}: {evidence}"))
    return described


def _found_by_pair(pair: dict[str, Any]) -> str:
    """What proposed a pair, with its number: "perceptual hash (3 bits apart) and bottleneck (similarity 0.91)"."""
    signals = ("hash", "embedding") if pair["signal"] == "both" else (pair["signal"],)
    found = []
    for signal in signals:
        if signal == "hash" and pair.get("hash_bits") is not None:
            found.append(f"{FOUND_BY[signal]} ({pair['hash_bits']} bits apart)")
        elif signal == "embedding" and pair.get("similarity") is not None:
            found.append(f"{FOUND_BY[signal]} (similarity {pair['similarity']:.2f})")
        else:
            found.append(FOUND_BY[signal])
    return " and ".join(found)
