"""What an audit returns: findings and the report that holds them, as plain values the reporters render."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Severity(str, Enum):
    """How bad a finding is; ``--fail-on`` gates on its ``rank`` (error > warning > info)."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)

    @classmethod
    def threshold(cls, fail_on: str) -> Severity | None:
        """The lowest severity that fails a gate set to ``fail_on`` (error, warning or never: None)."""
        return None if fail_on == "never" else cls(fail_on)


@dataclass(frozen=True)
class Finding:
    """One problem: which check saw it, how bad it is, the files or class folders it concerns (relative to the
    dataset folder) and a message that says what to do."""

    check: str
    severity: Severity
    paths: tuple[str, ...]
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def fails(self, fail_on: str) -> bool:
        """Whether this finding fails a gate set to ``fail_on``."""
        threshold = Severity.threshold(fail_on)
        return threshold is not None and self.severity.rank >= threshold.rank


@dataclass
class AuditReport:
    dataset: str
    findings: list[Finding]
    images: int
    classes: dict[str, int]  # label -> image files
    checks_run: list[str]
    seconds: float
    bottlenecks: dict[str, int] | None = None  # computed / reused, when a check needed them
    properties: dict[str, int] | None = None  # images decoded (computed) / taken from the property cache (reused)
    warnings: list[str] = field(default_factory=list)  # about the run, not the dataset (a damaged cache shard)

    def counts(self) -> dict[str, int]:
        """Findings per severity, every severity present."""
        counts = dict.fromkeys((s.value for s in reversed(Severity)), 0)
        for finding in self.findings:
            counts[finding.severity.value] += 1
        return counts

    def by_check(self) -> dict[str, int]:
        """Findings per check id, in report order."""
        counts: dict[str, int] = {}
        for finding in self.findings:
            counts[finding.check] = counts.get(finding.check, 0) + 1
        return counts

    def fails(self, fail_on: str) -> bool:
        """Whether the CI gate fails: any finding at or above ``fail_on`` (error, warning; never)."""
        return any(finding.fails(fail_on) for finding in self.findings)

    def summary(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "classes": self.classes,
            "findings": self.counts(),
            "by_check": self.by_check(),
            "checks_run": self.checks_run,
            "seconds": round(self.seconds, 2),
            "bottlenecks": self.bottlenecks,
            "properties": self.properties,
        }

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        return {
            "dataset": self.dataset,
            "summary": self.summary(),
            "findings": [
                {**asdict(finding), "severity": finding.severity.value, "paths": list(finding.paths)}
                for finding in self.findings
            ],
        }
