"""The CI gate: does a run's accuracy clear the bar (absolute, per class, and against a baseline run)?"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from retrain.core.settings import GateSettings

if TYPE_CHECKING:  # pandas stays out of the command line's start-up
    from retrain.core.run_report import ClassScores, ModelDiff


@dataclass(frozen=True)
class GateResult:
    """The settings a gate was asked with, the conditions that failed (none: passed), and warnings that do not fail
    it (a test set too small to tell the threshold from the figure)."""

    settings: GateSettings
    failures: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def verdict(self) -> str:
        """The one wording of the outcome: ``passed`` or ``FAILED: <each failure>``."""
        return "passed" if self.passed else "FAILED: " + "; ".join(self.failures)


@dataclass(frozen=True)
class GateScores:
    """What the gate judges of a run's test predictions: accuracy with its 95% interval, and each class's recall."""

    accuracy: float
    images: int
    accuracy_interval: tuple[float, float] | None = None
    per_class: Mapping[str, ClassScores] | None = None  # with recall intervals: warns of too few photos per class


def judge(
    scores: GateScores, class_recall: dict[str, float], settings: GateSettings, diff: ModelDiff | None = None
) -> GateResult:
    """Check each condition asked for; every unmet one is a failure line.

    Against a baseline, accuracy and each class's recall are compared on the test photos both runs share under the
    same class, since for those the model is all that changed; photos the change added, removed or relabelled are
    reported apart, never held against the model. When the runs cannot be matched photo by photo (another module or
    split, an older baseline, no photo in common), the whole test sets are compared, so a change of module or split
    cannot dodge the gate.
    """
    accuracy = scores.accuracy
    failures = []
    if settings.min_test_images is not None and scores.images < settings.min_test_images:
        failures.append(
            f"{scores.images} test images are fewer than --min-test-images {settings.min_test_images}: "
            "too few to tell whether the model meets the bar"
        )
    if settings.min_accuracy is not None and accuracy < settings.min_accuracy:
        shown, bar = percents(accuracy, settings.min_accuracy)
        failures.append(f"accuracy {shown} is below --min-accuracy {bar}")
    if settings.min_class_recall is not None:
        low = {label: r for label, r in class_recall.items() if r < settings.min_class_recall}
        if low:
            bar = settings.min_class_recall
            listed = ", ".join(
                f"{label} {percents(r, bar)[0]}" for label, r in sorted(low.items(), key=lambda item: item[1])
            )
            failures.append(f"recall below --min-class-recall {percents(bar, *low.values())[0]}: {listed}")
    images = diff.images if diff is not None else None
    shared = images is not None and images.shared_accuracy_before is not None
    if shared:
        before, after = images.shared_accuracy_before, images.shared_accuracy_after
        if after < before - settings.max_regression:
            failures.append(
                f"accuracy on the {images.shared} test photos both runs share dropped "
                f"{_drop(before - after, settings.max_regression)} from the baseline's {before:.1%} to {after:.1%}"
            )
    elif settings.baseline_accuracy is not None and accuracy < settings.baseline_accuracy - settings.max_regression:
        baseline = settings.baseline_accuracy
        failures.append(
            f"accuracy {accuracy:.1%} dropped {_drop(baseline - accuracy, settings.max_regression)} from the "
            f"baseline's {baseline:.1%}"
        )
    if diff is not None and settings.max_class_regression is not None:
        failures.extend(_class_regressions(diff, settings, shared))
    return GateResult(settings, tuple(failures), _too_few_warnings(scores, settings))


def _class_regressions(diff: ModelDiff, settings: GateSettings, shared: bool) -> list[str]:
    limit = settings.max_class_regression
    classes = diff.images.shared_classes if shared else diff.classes
    dropped = [
        change
        for change in classes
        if change.gated(settings.min_class_support) and change.delta is not None and -change.delta > limit
    ]
    if not dropped:
        return []
    listed = ", ".join(
        f"{change.label} {change.recall_before:.1%} -> {change.recall_after:.1%}"
        + (f" ({change.support_after} photos)" if shared else "")
        for change in sorted(dropped, key=lambda change: change.delta)
    )
    where = "on the test photos both runs share " if shared else ""
    return [f"recall {where}dropped more than --max-class-regression {_points(limit)} from the baseline's: {listed}"]


def _too_few_warnings(scores: GateScores, settings: GateSettings) -> tuple[str, ...]:
    """The rule: a threshold inside the figure's 95% interval cannot be told from it, so the verdict on it could go
    either way on another draw of as many photos."""
    warnings = []
    interval = scores.accuracy_interval
    threshold = settings.min_accuracy
    if threshold is not None and interval is not None and interval[0] <= threshold <= interval[1]:
        warnings.append(
            f"{scores.images} test images: accuracy {scores.accuracy:.1%} (95% interval {interval_text(interval)}) "
            f"cannot tell --min-accuracy {threshold:.1%} from it: the threshold lies inside the interval, so the "
            f"verdict could differ on another {scores.images} photos"
        )
    threshold = settings.min_class_recall
    if threshold is not None and scores.per_class:
        unclear = [
            f"{label} {row.recall:.1%} of {row.support} ({interval_text(row.recall_interval)})"
            for label, row in scores.per_class.items()
            if row.recall_interval is not None and row.recall_interval[0] <= threshold <= row.recall_interval[1]
        ]
        if unclear:
            warnings.append(
                f"too few test images to tell --min-class-recall {threshold:.1%} from the recall (the threshold lies "
                f"inside its 95% interval): {', '.join(unclear)}"
            )
    return tuple(warnings)


def percents(value: float, *others: float) -> tuple[str, ...]:
    """``value`` and ``others`` as percentages with one decimal, or with as many more (up to four) as tell ``value``
    from each of them and keep what is short of 100% or above 0% from reading so: 89.95% below 90.00%, 99.99% (not
    100.0%), never 90.0% below 90.0%."""
    numbers = (value, *others)
    for decimals in range(1, 5):
        shown = tuple(f"{number:.{decimals}%}" for number in numbers)
        apart = all(text != shown[0] for text, number in zip(shown[1:], others, strict=True) if number != value)
        pairs = zip(shown, numbers, strict=True)
        rounded = any(float(text[:-1]) in (0, 100) and number not in (0, 1) for text, number in pairs)
        if apart and not rounded:
            break
    return shown


def _points(fraction: float) -> str:
    """A difference of two percentages: ``2.0 points`` (as --max-regression 0.02 reads)."""
    return f"{fraction * 100:.1f} points"


def _drop(drop: float, limit: float) -> str:
    """``3.1 points (over --max-regression 2.0 points)``, with more decimals where one would not tell them apart."""
    shown, bar = (text.removesuffix("%") for text in percents(drop, limit))
    return f"{shown} points (over --max-regression {bar} points)"


def interval_text(interval: tuple[float, float]) -> str:
    """``66.4-92.7%``: the one way an interval is written, in every report and line."""
    return f"{interval[0]:.1%}-{interval[1]:.1%}".replace("%-", "-", 1)
