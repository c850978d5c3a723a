"""A run against a baseline run: accuracy and per-class recall before and after, and the test photos that flipped.

Photos are matched by content key (the bottleneck cache's SHA-1 of the file), so a renamed photo is still the same
photo. Those both runs share under the same class are what the model is judged on; photos new to the test split, gone
from it, or moved to another class are counted apart: a change of the test set is not a change of the model.
Pure pandas, no TensorFlow. The diff's types are in ``retrain.core.run_report``, part of a run's typed results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from retrain.core.display import printable
from retrain.core.predictions import CONTENT_KEY, predictions_table
from retrain.core.results import Evaluation
from retrain.core.run_json import BaselineRun
from retrain.core.run_report import (
    ClassChange,
    ClassScores,
    FlippedImage,
    ImageChanges,
    ModelDiff,
    RelabelledImage,
    RunFacts,
)

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
    removed = before[~before.index.isin(after.index)]

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

    relabelled = [
        RelabelledImage(
            path=new.iloc[row]["path"],
            content_key=str(shared[row]),
            label_before=old.iloc[row]["true_label"],
            label_after=new.iloc[row]["true_label"],
            predicted_before=old.iloc[row]["predicted_label"],
            predicted_after=new.iloc[row]["predicted_label"],
        )
        for row in np.flatnonzero(~same_class)
    ]
    return ImageChanges(
        now_right=flipped(right_after & ~right_before),
        now_wrong=flipped(right_before & ~right_after),
        unchanged=int(np.sum(same_class & (right_before == right_after))),
        relabelled=len(relabelled),
        new=len(added),
        new_right=int(np.sum(added["true_label"] == added["predicted_label"])),
        gone=len(removed),
        shared_right_before=int(np.sum(right_before)),
        shared_right_after=int(np.sum(right_after)),
        shared_classes=_shared_classes(
            new["true_label"].to_numpy()[same_class], right_before[same_class], right_after[same_class]
        ),
        relabelled_images=tuple(sorted(relabelled, key=lambda item: item.path)),
        new_by_class=_counts(added["true_label"]),
        gone_by_class=_counts(removed["true_label"]),
    )


def _shared_classes(labels: np.ndarray, right_before: np.ndarray, right_after: np.ndarray) -> tuple[ClassChange, ...]:
    """Each class's recall on the photos both runs share under it (one row each): the same photos on both sides."""
    changes = []
    for label in sorted(set(labels.tolist())):
        rows = labels == label
        count = int(rows.sum())
        changes.append(
            ClassChange(
                label=str(label),
                recall_before=float(right_before[rows].mean()),
                recall_after=float(right_after[rows].mean()),
                support_before=count,
                support_after=count,
            )
        )
    return tuple(changes)


def _counts(labels: pd.Series) -> MappingProxyType:
    return MappingProxyType({str(label): int(count) for label, count in sorted(labels.value_counts().items())})


def changed_photos_line(diff: ModelDiff | None) -> str:
    """What the change did to the test photos, per class: the story's first part ("" when nothing is known or nothing
    changed), e.g. ``3 new test photos (daisy 1, roses 2); 3 test photos relabelled tulips -> daisy: the model still
    says tulips``."""
    images = diff.images if diff is not None else None
    if images is None:
        return ""
    parts = []
    if images.new:
        parts.append(f"{images.new} new test {_plural(images.new, 'photo')}{_per_class(images.new_by_class)}")
    if images.gone:
        parts.append(
            f"{images.gone} {_plural(images.gone, 'photo')} left the test set{_per_class(images.gone_by_class)}"
        )
    if images.relabelled and not images.relabelled_images:  # an older report: the count alone
        parts.append(f"{images.relabelled} moved to another class")
    parts += _relabelled_lines(images.relabelled_images)
    return "; ".join(parts)


def _relabelled_lines(relabelled: tuple[RelabelledImage, ...]) -> list[str]:
    """One line per move (old class -> new class) and what the model says of those photos now, e.g. ``3 test photos
    relabelled tulips -> daisy: the model still says tulips``."""
    moves: dict[tuple[str, str], list[RelabelledImage]] = {}
    for item in relabelled:
        moves.setdefault((item.label_before, item.label_after), []).append(item)
    lines = []
    for (before, after), items in moves.items():
        said = pd.Series([item.predicted_after for item in items]).value_counts()
        if len(said) == 1:
            verdict = {before: "still says", after: "now says"}.get(said.index[0], "says")
            says = f"the model {verdict} {printable(said.index[0])}"
        else:
            says = "the model says " + ", ".join(f"{printable(label)} ({count})" for label, count in said.items())
        count = len(items)
        lines.append(
            f"{count} test {_plural(count, 'photo')} relabelled {printable(before)} -> {printable(after)}: {says}"
        )
    return lines


def shared_photos_line(diff: ModelDiff | None) -> str:
    """What the model did on the photos it had already seen (both runs, same class): the story's second part, e.g.
    ``accuracy 91.9% -> 89.2%, roses recall 87.5% -> 75.0%; 2 test images flipped (0 now right, 2 now wrong); whole
    test sets 91.0% -> 88.0%``; runs not comparable photo by photo say so and give the whole sets'."""
    if diff is None:
        return ""
    images = diff.images
    if images is None or images.shared_accuracy_before is None:
        parts = [f"accuracy {diff.accuracy_before:.1%} -> {diff.accuracy_after:.1%}"]
        parts += [_recall_change(change) for change in _moved_most(diff.classes, diff.min_class_support)]
        if images is None:
            return ", ".join(parts) + f"; {printable(diff.note)}"
        if not images.shared:
            return ", ".join(parts) + " (no test photo in common with the baseline: the whole test sets compared)"
        return ", ".join(parts) + f"; {_flipped(images)}"
    parts = [f"accuracy {images.shared_accuracy_before:.1%} -> {images.shared_accuracy_after:.1%}"]
    parts += [_recall_change(change) for change in _moved_most(images.shared_classes, diff.min_class_support)]
    whole = f"whole test sets, changed photos included: {diff.accuracy_before:.1%} -> {diff.accuracy_after:.1%}"
    return "; ".join([", ".join(parts), _flipped(images), whole])


def _recall_change(change: ClassChange) -> str:
    return f"{printable(change.label)} recall {change.recall_before:.1%} -> {change.recall_after:.1%}"


def _flipped(images: ImageChanges) -> str:
    flipped = f"{images.flipped} test {_plural(images.flipped, 'image')} flipped"
    if images.flipped:
        flipped += f" ({len(images.now_right)} now right, {len(images.now_wrong)} now wrong)"
    return flipped


def _per_class(counts: Mapping[str, int]) -> str:
    return " (" + ", ".join(f"{printable(label)} {count}" for label, count in counts.items()) + ")" if counts else ""


def _moved_most(classes: tuple[ClassChange, ...], min_support: int) -> list[ClassChange]:
    """The classes whose recall moved most, among those with enough test images to mean it (else among all)."""
    moved = [change for change in classes if change.delta]
    gated = [change for change in moved if change.gated(min_support)]
    return sorted(gated or moved, key=lambda change: -abs(change.delta))[:CLASSES_NAMED]


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"
