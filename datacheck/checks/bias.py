"""Shortcut bias: when trivial image statistics already tell the classes apart, the model may learn those instead."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from datacheck.findings import Finding, Severity
from datacheck.registry import AuditData, Check, register

# What a camera, a room or a scraper leaves in every photo of a class, without looking at the object.
TRIVIAL_STATISTICS = {
    "red": "mean red",
    "green": "mean green",
    "blue": "mean blue",
    "brightness": "brightness",
    "contrast": "contrast",
    "width": "width",
    "height": "height",
    "bytes": "file size",
}


# Photos the forest learns from at most, as a sample of each class in proportion (and at least MIN_PER_CLASS of each
# class that has them): skill is a rate, which 2,000 photos estimate within about 1.5 points, so the check costs about
# what it costs on flowers-dev however large the dataset (20,000 rows: 58.5 s with 20,000 and 100 trees, 5.4 s; load
# 14, benchmarks/model_checks.py).
MAX_PHOTOS = 2_000
MIN_PER_CLASS = 20
# Trees of the forest: 50 give flowers-dev a balanced accuracy 0.65 points under 100's (0.4243 and 0.4308 with 40
# photos added; skill 0.28 and 0.29), far from the warning at 0.6, at half the cost (3.4 s against 7.9 s, load 14).
TREES = 50


@register
class ShortcutBias(Check):
    """The tutorial's blue room and green room: a classifier on colour, brightness and size alone predicting the class.

    Skill is the cross-validated balanced accuracy rescaled so that chance is 0 and perfect is 1; the flower photos,
    whose colours do differ by class, score about 0.3. Memory per image: its 7 statistics, and the forest's nodes
    (about 5 KB per photo learnt from, 50 trees), so above ``MAX_PHOTOS`` a sample of each class is learnt from:
    skill is a rate, which that many photos estimate within about 1.5 points, in bounded memory and time. The
    sample is chosen by content key, so a pull request changes it by its own photos at most and an unchanged dataset
    is judged on the same photos every time.
    """

    id = "shortcut_bias"
    advice = "Colour, brightness or size give the class away: vary the settings."

    @classmethod
    def highlights(cls, details: dict[str, Any]) -> list[tuple[str, Any]]:
        return [
            ("balanced accuracy", f"{details['balanced_accuracy']:.0%} (chance {details['chance']:.0%})"),
            ("mostly by", " and ".join(details["telling_statistics"])),
        ]

    def run(self, data: AuditData) -> list[Finding]:
        # scikit-learn takes a second to load: only when the check runs, not whenever the settings are built
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.metrics import recall_score

        from datacheck.models import out_of_fold

        images = sample_by_content(data.readable())
        features = images[list(TRIVIAL_STATISTICS)].to_numpy(dtype=float)
        model = RandomForestClassifier(n_estimators=TREES, min_samples_leaf=2, random_state=0)
        predictions = out_of_fold(
            model, features, images["label"].tolist(), data.settings.cross_validation_folds, images["sha1"].tolist()
        )
        if predictions is None:
            return []
        recalls = recall_score(
            predictions.labels,
            predictions.probabilities.argmax(axis=1),
            labels=range(len(predictions.classes)),
            average=None,
            zero_division=0,
        )
        chance = 1 / len(predictions.classes)
        skill = (recalls.mean() - chance) / (1 - chance)
        if skill <= data.settings.max_shortcut_skill:
            return []
        importances = model.fit(features[predictions.rows], predictions.labels).feature_importances_
        telling = [list(TRIVIAL_STATISTICS.values())[i] for i in np.argsort(importances)[::-1][:2]]
        folders = {folder.label: data.folder_path(folder) for folder in data.scan.classes}
        by_recall = sorted(zip(predictions.classes, recalls, strict=True), key=lambda item: -item[1])
        return [
            self.finding(
                Severity.WARNING,
                [folders[label] for label, _ in by_recall],
                f"mean colour, brightness and size alone tell the classes apart with {recalls.mean():.0%} balanced "
                f"accuracy (chance {chance:.0%}), mostly by {' and '.join(telling)}: the model may learn the "
                "background or the camera rather than the object; photograph every class in varied settings",
                balanced_accuracy=round(float(recalls.mean()), 4),
                chance=round(chance, 4),
                skill=round(float(skill), 4),
                recall_by_class={label: round(float(recall), 4) for label, recall in by_recall},
                telling_statistics=telling,
            )
        ]


def sample_by_content(images: pd.DataFrame) -> pd.DataFrame:
    """At most about ``MAX_PHOTOS`` rows, each class in proportion (at least ``MIN_PER_CLASS`` of it): the rows of each
    class whose content keys come first (read backwards, so that the sample is not tied to the folds, which the keys'
    first digits choose)."""
    if len(images) <= MAX_PHOTOS:
        return images
    counts = images["label"].map(images["label"].value_counts())
    quota = np.maximum((counts * MAX_PHOTOS / len(images)).round(), np.minimum(counts, MIN_PER_CLASS))
    rank = images["sha1"].str[::-1].groupby(images["label"]).rank(method="first")
    return images[rank <= quota]
