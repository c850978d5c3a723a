"""The CI gate: does a run's accuracy clear the bar (absolute, per class, and against a baseline run)?"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrain.core.errors import InputError
from retrain.core.settings import GateSettings


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

    def to_dict(self) -> dict[str, Any]:
        """As metrics.json keeps it."""
        return {**dataclasses.asdict(self.settings), "failures": list(self.failures)}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> GateResult:
        names = {f.name for f in dataclasses.fields(GateSettings)}
        settings = GateSettings(**{key: value for key, value in document.items() if key in names})
        return cls(settings, tuple(document.get("failures", ())))


def judge(accuracy: float, class_recall: dict[str, float], settings: GateSettings) -> GateResult:
    """Check each condition asked for; every unmet one is a failure line."""
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
    return GateResult(settings, tuple(failures))


def baseline_accuracy(metrics_file: Path) -> float:
    """The test accuracy recorded in an earlier run's metrics.json (e.g. the main branch's)."""
    try:
        return float(json.loads(Path(metrics_file).read_text(encoding="utf-8"))["test_accuracy"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "no test_accuracy in it"
        raise InputError(f"cannot read the baseline metrics {metrics_file} ({reason})") from None
