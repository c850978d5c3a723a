"""A run against a baseline run: accuracy and per-class recall before and after, and the test photos that flipped.

Photos are matched by content key (the bottleneck cache's SHA-1 of the file), so a renamed photo is still the same
photo, and photos new to the test split are counted apart: a change of the test set is not a change of the model.
Pure pandas, no TensorFlow: the gate, the reports and ``retrain-ci report`` all read it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retrain.core.display import printable
from retrain.core.errors import InputError
from retrain.core.predictions import CONTENT_KEY, check_predictions, read_predictions
from retrain.core.results import Evaluation

# What makes two runs comparable photo by photo, as metrics.json records it (a run that records none, like
# `evaluate` on a golden folder, is taken as comparable on it).
COMPARABLE = ("module", "split")
# The summary line names at most this many classes, those whose recall moved most.
CLASSES_NAMED = 3


@dataclass(frozen=True)
class BaselineRun:
    """An earlier run's report, read and checked before any work: its metrics and the predictions kept beside them."""

    metrics_file: Path
    metrics: dict[str, Any]
    predictions: pd.DataFrame | None  # None: a metrics.json alone

    @property
    def accuracy(self) -> float:
        return float(self.metrics["test_accuracy"])


def load_baseline_run(path: Path) -> BaselineRun:
    """An earlier run's ``--output-dir``, its ``report/`` folder, or a metrics.json (predictions.csv beside it is used
    when present); anything else is an InputError, raised before the run starts."""
    metrics_file = _metrics_file(Path(path))
    try:
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError(f"cannot read the baseline metrics {metrics_file} ({error.strerror})") from None
    except ValueError:
        raise InputError(f"cannot read the baseline metrics {metrics_file} (it is not JSON)") from None
    problem = _metrics_problem(metrics)
    if problem:
        raise InputError(f"the baseline {metrics_file} is not a retrain-ci run's metrics.json ({problem})")
    return BaselineRun(metrics_file, metrics, _baseline_predictions(metrics_file.parent, metrics))


def _metrics_file(path: Path) -> Path:
    if not path.is_dir():
        return path
    for candidate in (path / "report" / "metrics.json", path / "metrics.json"):
        if candidate.is_file():
            return candidate
    raise InputError(f"the baseline {path} holds no retrain-ci report (metrics.json or report/metrics.json)")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _metrics_problem(metrics: Any) -> str | None:
    if not isinstance(metrics, dict) or not _is_number(metrics.get("test_accuracy")):
        return "no test_accuracy in it"
    per_class = metrics.get("per_class", {})
    rows = per_class.values() if isinstance(per_class, dict) else [None]
    if not all(
        isinstance(row, dict) and _is_number(row.get("recall")) and _is_number(row.get("support")) for row in rows
    ):
        return "its per_class is not each class's recall and support"
    return None


def _baseline_predictions(folder: Path, metrics: dict[str, Any]) -> pd.DataFrame | None:
    file = folder / "predictions.csv"
    if not file.is_file():
        return None
    try:
        table = read_predictions(file)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read the baseline predictions {file} ({error})") from None
    check_predictions(folder, table, tuple(metrics.get("per_class", ())), metrics.get("test_images"))
    return table


@dataclass(frozen=True)
class ClassChange:
    """One class's recall in each run (None: no test images of it there) and its test images in each."""

    label: str
    recall_before: float | None
    recall_after: float | None
    support_before: int
    support_after: int

    @property
    def delta(self) -> float | None:
        if self.recall_before is None or self.recall_after is None:
            return None
        return self.recall_after - self.recall_before

    def gated(self, min_support: int) -> bool:
        """Too few test images in either run and one photo moves the recall by many points: reported, not gated."""
        return min(self.support_before, self.support_after) >= min_support


@dataclass(frozen=True)
class FlippedImage:
    """A test photo in both runs, right in one and wrong in the other."""

    path: str
    content_key: str
    true_label: str
    predicted_before: str
    predicted_after: str


@dataclass(frozen=True)
class ImageChanges:
    """The test photos of both runs, matched by content."""

    now_right: tuple[FlippedImage, ...]
    now_wrong: tuple[FlippedImage, ...]
    unchanged: int  # in both runs, with the same outcome
    relabelled: int  # in both runs under different classes: a change of the labels, not of the model
    new: int  # test photos the baseline did not have
    new_right: int
    gone: int  # the baseline's test photos this run does not have

    @property
    def flipped(self) -> int:
        return len(self.now_right) + len(self.now_wrong)


@dataclass(frozen=True)
class ModelDiff:
    """This run against the baseline; ``images`` is None when the runs cannot be matched photo by photo (``note``)."""

    baseline: str
    accuracy_before: float
    accuracy_after: float
    images_before: int | None
    images_after: int
    classes: tuple[ClassChange, ...]
    min_class_support: int
    images: ImageChanges | None
    note: str = ""

    @property
    def accuracy_delta(self) -> float:
        return self.accuracy_after - self.accuracy_before

    def to_dict(self) -> dict[str, Any]:
        """As metrics.json keeps it (its ``baseline`` section)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> ModelDiff:
        images = document.get("images")
        if images is not None:
            flips = {key: tuple(FlippedImage(**item) for item in images[key]) for key in ("now_right", "now_wrong")}
            images = ImageChanges(**{**images, **flips})
        classes = tuple(ClassChange(**item) for item in document["classes"])
        return cls(**{**document, "classes": classes, "images": images})


def compare(
    baseline: BaselineRun, evaluation: Evaluation, run_info: dict[str, Any], min_class_support: int
) -> ModelDiff:
    """This run's test predictions against the baseline's: deltas always, flipped photos when the runs allow it."""
    before = baseline.metrics
    note = _why_not_photo_by_photo(baseline, run_info, evaluation)
    images = None if note else _image_changes(baseline.predictions, _predictions(evaluation))
    return ModelDiff(
        baseline=str(baseline.metrics_file.resolve()),
        accuracy_before=baseline.accuracy,
        accuracy_after=evaluation.accuracy,
        images_before=before.get("test_images"),
        images_after=len(evaluation.truths),
        classes=_class_changes(before.get("per_class", {}), evaluation),
        min_class_support=min_class_support,
        images=images,
        note=note,
    )


def _why_not_photo_by_photo(baseline: BaselineRun, run_info: dict[str, Any], evaluation: Evaluation) -> str:
    before = baseline.metrics
    changed = [
        f"{key} {_setting(before[key])} -> {_setting(run_info[key])}"
        for key in COMPARABLE
        if key in before and key in run_info and before[key] != run_info[key]
    ]
    if "per_class" in before and tuple(before["per_class"]) != tuple(evaluation.labels):
        changed.append(f"classes {', '.join(before['per_class'])} -> {', '.join(evaluation.labels)}")
    if changed:
        return f"not comparable photo by photo ({'; '.join(changed)})"
    if baseline.predictions is None or CONTENT_KEY not in baseline.predictions.columns:
        return "flipped images need a newer baseline (a report whose predictions.csv has content keys)"
    if len(evaluation.content_keys) != len(evaluation.paths):
        return "flipped images need content keys of this run's test photos"
    return ""


def _setting(value: Any) -> str:
    if isinstance(value, dict):
        return "(" + ", ".join(f"{key} {item}" for key, item in value.items()) + ")"
    return str(value)


def _class_changes(before: dict[str, dict[str, Any]], evaluation: Evaluation) -> tuple[ClassChange, ...]:
    after = evaluation.per_class(every_label=True)
    labels = list(dict.fromkeys([*before, *after.index]))
    changes = []
    for label in labels:
        old = before.get(label, {"support": 0})
        support = int(after.loc[label, "images"]) if label in after.index else 0
        changes.append(
            ClassChange(
                label=label,
                recall_before=float(old["recall"]) if old["support"] else None,
                recall_after=float(after.loc[label, "recall"]) if support else None,
                support_before=int(old["support"]),
                support_after=support,
            )
        )
    return tuple(changes)


def _predictions(evaluation: Evaluation) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": [str(Path(p).resolve()) for p in evaluation.paths],
            CONTENT_KEY: evaluation.content_keys,
            "true_label": [evaluation.labels[i] for i in evaluation.truths],
            "predicted_label": [evaluation.labels[i] for i in evaluation.predictions],
        }
    )


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


def model_change_line(metrics: dict[str, Any]) -> str:
    """One line of what the run changed against its baseline, for summaries and pull requests ("" without one), e.g.
    ``accuracy 91.0% -> 91.6%, roses recall 87.5% -> 90.6%, 4 test images flipped (3 now right, 1 now wrong);
    12 new test photos``."""
    if not metrics.get("baseline"):
        return ""
    diff = ModelDiff.from_dict(metrics["baseline"])
    parts = [f"accuracy {diff.accuracy_before:.1%} -> {diff.accuracy_after:.1%}"]
    parts += [
        f"{printable(change.label)} recall {change.recall_before:.1%} -> {change.recall_after:.1%}"
        for change in _moved_most(diff)
    ]
    images = diff.images
    if images is None:
        return ", ".join(parts) + f"; {diff.note}"
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
