"""The CI gate: does a run's accuracy clear the bar (absolute, per class, and against a baseline run)?"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from retrain.errors import RetrainError


@dataclass(frozen=True)
class GateOptions:
    min_accuracy: float | None = None
    min_class_recall: float | None = None
    baseline_accuracy: float | None = None
    max_regression: float = 0.02

    def as_dict(self) -> dict:
        return {
            "min_accuracy": self.min_accuracy,
            "min_class_recall": self.min_class_recall,
            "baseline_accuracy": self.baseline_accuracy,
            "max_regression": self.max_regression,
        }


def baseline_accuracy(metrics_file: Path) -> float:
    """The test accuracy recorded in an earlier run's metrics.json (e.g. the main branch's)."""
    try:
        return float(json.loads(Path(metrics_file).read_text(encoding="utf-8"))["test_accuracy"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "no test_accuracy in it"
        raise RetrainError(f"cannot read the baseline metrics {metrics_file} ({reason})") from None


def gate_failures(accuracy: float, class_recall: dict[str, float], options: GateOptions) -> list[str]:
    """One line per unmet condition; empty when the gate passes."""
    failures = []
    if options.min_accuracy is not None and accuracy < options.min_accuracy:
        failures.append(f"accuracy {accuracy:.4f} is below --min-accuracy {options.min_accuracy:.4f}")
    if options.min_class_recall is not None:
        low = {label: r for label, r in class_recall.items() if r < options.min_class_recall}
        if low:
            listed = ", ".join(f"{label} {r:.4f}" for label, r in sorted(low.items(), key=lambda item: item[1]))
            failures.append(f"recall below --min-class-recall {options.min_class_recall:.4f}: {listed}")
    if options.baseline_accuracy is not None and accuracy < options.baseline_accuracy - options.max_regression:
        failures.append(
            f"accuracy {accuracy:.4f} dropped {options.baseline_accuracy - accuracy:.4f} from the baseline's "
            f"{options.baseline_accuracy:.4f} (--max-regression {options.max_regression:.4f})"
        )
    return failures
