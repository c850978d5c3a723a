"""Outliers: photos unlike anything in their class, and unlike any other class too (else they are mislabels)."""

from __future__ import annotations

from typing import Any

import numpy as np

from datacheck.findings import Finding, Severity
from datacheck.registry import AuditData, Check, Need, register

# A photo's distance to the dataset: one minus its mean cosine similarity to this many nearest other photos, of any
# class, so a photo filed in the wrong class (close to its true class) is suspected_mislabel's, not an outlier.
NEIGHBOURS = 5
# The median absolute deviation times this estimates the standard deviation of a normal spread.
MAD_TO_SD = 1.4826


@register
class Outlier(Check):
    """A photo whose distance to its nearest photos is far above its class's typical distance, in robust standard
    deviations (median and median absolute deviation): a screenshot, a sign, a pet among flowers. Classes with fewer
    than ``min_images`` photos are left out: too few to say what is typical.

    On flowers-dev (1,837 photos) it flags 13: a shop sign, a sheet of stickers, strawberries, a bus, a tractor, a
    market stall, a painting, and six where the flower is a small part of another scene (a person, a dish, bottles).
    Memory per image: a unit-length copy of its bottleneck (5 KB at 1280 dimensions) and its 6 neighbours (72 bytes);
    above 20,000 photos a projected copy and graph links too (about 1.2 KB, datacheck.neighbours). The search is the
    one near_duplicates makes (``AuditData.bottleneck_neighbours``), so with both checks it costs nothing more.
    """

    id = "outlier"
    advice = "Unlike the rest of their class: delete those that show no member."
    needs = frozenset({Need.BOTTLENECKS})

    @classmethod
    def highlights(cls, details: dict[str, Any]) -> list[tuple[str, Any]]:
        return [
            ("", f"{details['score']:.1f} deviations above its class"),
            ("distance", f"{details['distance']:.2f}, typical {details['class_typical']:.2f}"),
        ]

    @classmethod
    def score(cls, details: dict[str, Any]) -> float | None:
        return details["score"]

    def run(self, data: AuditData) -> list[Finding]:
        if data.bottlenecks is None:
            return []
        neighbours = data.bottleneck_neighbours(NEIGHBOURS + 1)
        rows = neighbours.rows  # positions among the readable images
        if len(rows) <= NEIGHBOURS:
            return []
        distances = 1 - neighbours.similarities[:, 1:].mean(axis=1)  # past itself
        readable = data.readable()
        labels, paths = readable["label"].to_numpy()[rows], readable["path"].to_numpy()[rows]
        findings = []
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            if len(members) >= data.settings.min_images:
                findings += self._class_outliers(data, str(label), paths[members], distances[members])
        return findings

    def _class_outliers(self, data: AuditData, label: str, paths: np.ndarray, distances: np.ndarray) -> list[Finding]:
        typical = float(np.median(distances))
        spread = MAD_TO_SD * float(np.median(np.abs(distances - typical)))
        if spread <= 0:
            return []
        scores = (distances - typical) / spread
        return [
            self.finding(
                Severity.WARNING,
                [path],
                f"unlike the other photos of {label!r} and of every other class (distance {distance:.2f} to its "
                f"{NEIGHBOURS} nearest photos, typical {typical:.2f}: {score:.1f} deviations above): a screenshot, "
                f"a sign, another subject? delete it if it shows no {label}",
                distance=round(float(distance), 4),
                class_typical=round(typical, 4),
                score=round(float(score), 2),
            )
            for path, distance, score in zip(paths, distances, scores, strict=True)
            if score >= data.settings.outlier_score
        ]
