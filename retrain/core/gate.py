"""The CI gate: does a run's accuracy clear the bar (absolute, per class, and against a baseline run)?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from retrain.core.settings import GateSettings

if TYPE_CHECKING:  # pandas stays out of the command line's start-up
    from retrain.core.run_report import ModelDiff


@dataclass(frozen=True)
class GateResult:
    """The settings a gate was asked with and the conditions that failed (none: passed)."""

    settings: GateSettings
    failures: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def verdict(self) -> str:
        """The one wording of the outcome: ``passed`` or ``FAILED: <each failure>``."""
        return "passed" if self.passed else "FAILED: " + "; ".join(self.failures)


def judge(
    accuracy: float, class_recall: dict[str, float], settings: GateSettings, diff: ModelDiff | None = None
) -> GateResult:
    """Check each condition asked for; every unmet one is a failure line.

    Against a baseline, overall accuracy and each class's recall are compared whether or not the runs can be matched
    photo by photo, so a change of module or split cannot dodge the gate.
    """
    failures = []
    if settings.min_accuracy is not None and accuracy < settings.min_accuracy:
        failures.append(f"accuracy {accuracy:.4f} is below --min-accuracy {settings.min_accuracy:.4f}")
    if settings.min_class_recall is not None:
        low = {label: r for label, r in class_recall.items() if r < settings.min_class_recall}
        if low:
            listed = ", ".join(f"{label} {r:.4f}" for label, r in sorted(low.items(), key=lambda item: item[1]))
            failures.append(f"recall below --min-class-recall {settings.min_class_recall:.4f}: {listed}")
    baseline = settings.baseline_accuracy
    if baseline is not None and accuracy < baseline - settings.max_regression:
        failures.append(
            f"accuracy {accuracy:.4f} dropped {baseline - accuracy:.4f} from the baseline's "
            f"{baseline:.4f} (--max-regression {settings.max_regression:.4f})"
        )
    if diff is not None and settings.max_class_regression is not None:
        failures.extend(_class_regressions(diff, settings))
    return GateResult(settings, tuple(failures))


def _class_regressions(diff: ModelDiff, settings: GateSettings) -> list[str]:
    limit = settings.max_class_regression
    dropped = [
        change
        for change in diff.classes
        if change.gated(settings.min_class_support) and change.delta is not None and -change.delta > limit
    ]
    if not dropped:
        return []
    listed = ", ".join(
        f"{change.label} {change.recall_before:.4f} -> {change.recall_after:.4f}"
        for change in sorted(dropped, key=lambda change: change.delta)
    )
    return [f"recall dropped more than --max-class-regression {limit:.4f} from the baseline's: {listed}"]
