"""A run against a baseline run: accuracy and per-class recall before and after, and the test photos that flipped.

Photos are matched by content key (the bottleneck cache's SHA-1 of the file), so a renamed photo is still the same
photo, and photos new to the test split are counted apart: a change of the test set is not a change of the model.
Pure pandas, no TensorFlow. The diff's types are in ``retrain.core.run_report``, part of a run's typed results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from retrain.core.display import printable
from retrain.core.predictions import CONTENT_KEY, predictions_table
from retrain.core.results import Evaluation
from retrain.core.run_json import BaselineRun
from retrain.core.run_report import ClassChange, ClassScores, FlippedImage, ImageChanges, ModelDiff, RunFacts

# What makes two runs comparable photo by photo, as metrics.json records it (a run that records none, like
# `evaluate` on a golden folder, is taken as comparable on it).
COMPARABLE = ("module", "split")
# The summary line names at most this many classes, those whose recall moved most.
CLASSES_NAMED = 3


def run_diff(baseline: BaselineRun, evaluation: Evaluation, facts: RunFacts, min_class_support: int) -> ModelDiff:
    """This run's test predictions against the baseline's: deltas always, flipped photos when the runs allow it."""
    before = baseline.report
    note = _why_not_photo_by_photo(baseline, facts, evaluation)
    images = None if note else _image_changes(baseline.predictions, predictions_table(evaluation))
    return ModelDiff(
        baseline=str(baseline.metrics_file.resolve()),
        accuracy_before=baseline.accuracy,
        accuracy_after=evaluation.accuracy,
        images_before=before.test_images,
        images_after=len(evaluation.truths),
        classes=_class_changes(before.per_class, evaluation),
        min_class_support=min_class_support,
        images=images,
        note=note,
    )


def _why_not_photo_by_photo(baseline: BaselineRun, facts: RunFacts, evaluation: Evaluation) -> str:
    before = baseline.report
    changed = [
        printable(f"{key} {_setting(getattr(before.facts, key))} -> {_setting(getattr(facts, key))}")
        for key in COMPARABLE
        if None not in (getattr(before.facts, key), getattr(facts, key))
        and getattr(before.facts, key) != getattr(facts, key)
    ]
    if before.per_class and tuple(before.per_class) != tuple(evaluation.labels):
        changed.append(printable(f"classes {', '.join(before.per_class)} -> {', '.join(evaluation.labels)}"))
    if changed:
        return f"not comparable photo by photo ({'; '.join(changed)})"
    if baseline.predictions is None or CONTENT_KEY not in baseline.predictions.columns:
        return "flipped images need a newer baseline (a report whose predictions.csv has content keys)"
    if len(evaluation.content_keys) != len(evaluation.paths):
        return "flipped images need content keys of this run's test photos"
    return ""


def _setting(value: Any) -> str:
    if dataclasses.is_dataclass(value):
        return "(" + ", ".join(f"{f.name} {getattr(value, f.name)}" for f in dataclasses.fields(value)) + ")"
    return str(value)


def _class_changes(before: Mapping[str, ClassScores], evaluation: Evaluation) -> tuple[ClassChange, ...]:
    after = evaluation.per_class(every_label=True)
    labels = list(dict.fromkeys([*before, *after.index]))
    changes = []
    for label in labels:
        old = before.get(label, ClassScores(0.0, 0.0, 0.0, 0))
        support = int(after.loc[label, "images"]) if label in after.index else 0
        changes.append(
            ClassChange(
                label=label,
                recall_before=old.recall if old.support else None,
                recall_after=float(after.loc[label, "recall"]) if support else None,
                support_before=old.support,
                support_after=support,
            )
        )
    return tuple(changes)


def _image_changes(before: pd.DataFrame, after: pd.DataFrame) -> ImageChanges:
    """Each photo once (a test sample drawn with replacement, or two copies of one photo, repeat a key)."""
    before = before.drop_duplicates(CONTENT_KEY).set_index(CONTENT_KEY)
    after = after.drop_duplicates(CONTENT_KEY).set_index(CONTENT_KEY)
    shared = after.index[after.index.isin(before.index)]
    old, new = before.loc[shared], after.loc[shared]
    same_class = (old["true_label"] == new["true_label"]).to_numpy()
    right_before = (old["true_label"] == old["predicted_label"]).to_numpy() & same_class
    right_after = (new["true_label"] == new["predicted_label"]).to_numpy() & same_class
    added = after[~after.index.isin(before.index)]

    def flipped(rows: np.ndarray) -> tuple[FlippedImage, ...]:
        items = [
            FlippedImage(
                path=new.iloc[row]["path"],
                content_key=str(shared[row]),
                true_label=new.iloc[row]["true_label"],
                predicted_before=old.iloc[row]["predicted_label"],
                predicted_after=new.iloc[row]["predicted_label"],
            )
            for row in np.flatnonzero(rows)
        ]
        return tuple(sorted(items, key=lambda item: item.path))

    return ImageChanges(
        now_right=flipped(right_after & ~right_before),
        now_wrong=flipped(right_before & ~right_after),
        unchanged=int(np.sum(same_class & (right_before == right_after))),
        relabelled=int(np.sum(~same_class)),
        new=len(added),
        new_right=int(np.sum(added["true_label"] == added["predicted_label"])),
        gone=int(np.sum(~before.index.isin(after.index))),
    )


def model_change_line(diff: ModelDiff | None) -> str:
    """One line of what the run changed against its baseline, for summaries and pull requests ("" without one), e.g.
    ``accuracy 91.0% -> 91.6%, roses recall 87.5% -> 90.6%, 4 test images flipped (3 now right, 1 now wrong);
    12 new test photos``."""
    if diff is None:
        return ""
    parts = [f"accuracy {diff.accuracy_before:.1%} -> {diff.accuracy_after:.1%}"]
    parts += [
        f"{printable(change.label)} recall {change.recall_before:.1%} -> {change.recall_after:.1%}"
        for change in _moved_most(diff)
    ]
    images = diff.images
    if images is None:
        return ", ".join(parts) + f"; {printable(diff.note)}"
    flipped = f"{images.flipped} test {_plural(images.flipped, 'image')} flipped"
    if images.flipped:
        flipped += f" ({len(images.now_right)} now right, {len(images.now_wrong)} now wrong)"
    parts.append(flipped)
    test_set = [
        f"{count} {what}"
        for count, what in (
            (images.new, f"new test {_plural(images.new, 'photo')}"),
            (images.gone, f"{_plural(images.gone, 'photo')} left the test set"),
            (images.relabelled, "moved to another class"),
        )
        if count
    ]
    return "; ".join([", ".join(parts), *test_set])


def _moved_most(diff: ModelDiff) -> list[ClassChange]:
    """The classes whose recall moved most, among those with enough test images to mean it (else among all)."""
    moved = [change for change in diff.classes if change.delta]
    gated = [change for change in moved if change.gated(diff.min_class_support)]
    return sorted(gated or moved, key=lambda change: -abs(change.delta))[:CLASSES_NAMED]


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"
