"""The same picture more than once: byte-identical files, re-encoded or resized copies, and copies across splits."""

from __future__ import annotations

import numpy as np
import pandas as pd

from datacheck.findings import Finding, Severity
from datacheck.registry import AuditData, Check, register

HASH_BITS = 64
# Rows of the distance matrix computed at once: bounds memory on large datasets.
BLOCK_ROWS = 1024


def exact_groups(images: pd.DataFrame) -> list[pd.DataFrame]:
    """Readable images sharing one content key, two or more per group."""
    return [group for _, group in images.groupby("sha1", sort=False) if len(group) > 1]


def picture_groups(images: pd.DataFrame, max_bits: int) -> list[pd.DataFrame]:
    """Images of one picture: perceptual hashes at most ``max_bits`` apart (identical files have identical hashes).

    Rows sharing a hash are one picture without comparing them, so only distinct hashes are compared: thousands of
    images of one hash (blank frames, copies) cost one row of the distance matrix, not thousands squared.
    """
    if images.empty:
        return []
    hash_of_row, hashes = pd.factorize(images["phash"])
    signs = np.array([np.unpackbits(np.frombuffer(bytes.fromhex(h), np.uint8)) for h in hashes], dtype=np.float32)
    signs = 2 * signs - 1  # +-1 per bit, so a dot product counts agreeing minus disagreeing bits
    parent = list(range(len(hashes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(hashes), BLOCK_ROWS):
        distances = (HASH_BITS - signs[start : start + BLOCK_ROWS] @ signs.T) / 2
        for i, j in zip(*np.nonzero(distances <= max_bits), strict=True):
            parent[root(start + i)] = root(j)
    roots = pd.Series([root(h) for h in hash_of_row], index=images.index)
    return [images.loc[group.index] for _, group in roots.groupby(roots) if len(group) > 1]


def _classes(group: pd.DataFrame) -> list[str]:
    return sorted(group["label"].unique())


@register
class ExactDuplicates(Check):
    """Copies weigh one photo several times in training; copies in two classes are conflicting_labels instead."""

    id = "exact_duplicates"

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
    """One file in two classes teaches the model both answers for the same picture."""

    id = "conflicting_labels"

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
    """Re-encoded or resized copies that byte comparison misses, found by perceptual hash."""

    id = "near_duplicates"

    def run(self, data: AuditData) -> list[Finding]:
        findings = []
        for group in picture_groups(data.readable(), data.settings.near_duplicate_bits):
            if group["sha1"].nunique() < 2:
                continue  # byte-identical copies only: exact_duplicates or conflicting_labels
            classes = _classes(group)
            where = f"class {classes[0]!r}" if len(classes) == 1 else f"classes {', '.join(map(repr, classes))}"
            findings.append(
                self.finding(
                    Severity.WARNING,
                    group["path"],
                    f"{len(group)} copies of one picture (re-encoded, resized or retouched) in {where}: "
                    "keep the best one",
                    classes=classes,
                    perceptual_hashes=dict(zip(group["path"], group["phash"], strict=True)),
                )
            )
        return findings


@register
class SplitLeakage(Check):
    """A copy in training lets the model score on its twin in validation or testing: the score overstates accuracy."""

    id = "split_leakage"

    def run(self, data: AuditData) -> list[Finding]:
        return [
            self.finding(
                Severity.WARNING,
                group["path"],
                f"copies of one picture fall in the {' and '.join(sorted(group['split'].unique()))} splits, so the "
                "evaluation has seen them in training: keep one copy, or name the copies alike up to `_nohash_` "
                "(e.g. `rose7_nohash_1.jpg`, `rose7_nohash_2.jpg`) so they always share a split",
                splits=dict(zip(group["path"], group["split"], strict=True)),
            )
            for group in picture_groups(data.readable(), data.settings.near_duplicate_bits)
            if group["split"].nunique() > 1
        ]
