"""What an audit returns: findings, the report that holds them and its gate, as plain values the reporters render.

The audit JSON is written and read in datacheck.audit_json; comparing with a baseline is datacheck.baseline's (which
imports this module, never the other way round at run time).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datacheck.baseline import Comparison, ManifestEntry


class Severity(str, Enum):
    """How bad a finding is; ``--fail-on`` gates on its ``rank`` (error > warning > info)."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)

    @property
    def noun(self) -> str:
        """As reports for people name it: an info finding is a "note"."""
        return "note" if self is Severity.INFO else self.value

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
    fingerprint: str = ""  # datacheck.baseline.finding_fingerprint: the check and what it names, stable across runs

    def fails(self, fail_on: str) -> bool:
        """Whether this finding fails a gate set to ``fail_on``."""
        threshold = Severity.threshold(fail_on)
        return threshold is not None and self.severity.rank >= threshold.rank


@dataclass(frozen=True)
class AuditGate:
    """What ``--fail-on`` (and ``--fail-on-new``) make of an audit: the exit code, the pytest items and the page's
    gate line all read it, so they agree."""

    fail_on: str
    fail_on_new: bool
    passed: bool
    verdict: str  # one line: "passes --fail-on error", "fails --fail-on error: 2 findings at or above error"
    # The findings that fail it: not accepted, only those the change caused with fail_on_new, at or above fail_on.
    failing: tuple[Finding, ...] = ()

    @property
    def option(self) -> str:
        """The options that set this gate, as a user types them."""
        return f"--fail-on {self.fail_on}" + (" --fail-on-new" if self.fail_on_new else "")

    @classmethod
    def judge(cls, report: AuditReport, fail_on: str, fail_on_new: bool) -> AuditGate:
        failing = tuple(finding for finding in report.gating(caused_only=fail_on_new) if finding.fails(fail_on))
        gate = cls(fail_on, fail_on_new, not failing, "", failing)
        if not failing:
            return replace(gate, verdict=f"passes {gate.option}")
        which = "finding the change caused" if fail_on_new else "finding"
        count = f"{len(failing)} {which.replace('finding', 'findings') if len(failing) != 1 else which}"
        return replace(gate, verdict=f"fails {gate.option}: {count} at or above {fail_on}")


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
    pairs: dict[str, int] | None = None  # look-alike pairs matched / reused from earlier audits, when a check matched
    neighbours: dict[str, int] | None = None  # rows whose bottleneck neighbours were searched / kept (reused)
    out_of_fold: dict[str, int] | None = None  # suspected_mislabel's rows fitted / reused / predicted by a kept fit
    warnings: list[str] = field(default_factory=list)  # about the run, not the dataset (a damaged cache shard)
    manifest: dict[str, ManifestEntry] = field(default_factory=dict)  # by path: every file, to diff a later audit
    comparison: Comparison | None = None  # against --baseline
    accepted: dict[str, str] = field(default_factory=dict)  # fingerprint -> reason, from the settings
    fail_on: str = "error"
    fail_on_new: bool = False  # gate only on findings the change caused (against the baseline)
    # Seconds per stage: reading the dataset (files, properties, bottlenecks), then each check, so that what a re-audit
    # pays again is named (benchmarks/pr_gate.py).
    stage_seconds: dict[str, float] = field(default_factory=dict)
    gate: AuditGate = field(init=False)

    def __post_init__(self) -> None:
        self.gate = AuditGate.judge(self, self.fail_on, self.fail_on_new)

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

    def gating(self, *, caused_only: bool = False) -> list[Finding]:
        """The findings a gate judges: never accepted ones; with ``caused_only``, only those the change caused (not
        those that shifted on untouched files, nor old ones)."""
        return [
            finding
            for finding in self.findings
            if finding.fingerprint not in self.accepted
            and not (caused_only and self.comparison and self.comparison.status(finding).status != "caused")
        ]

    def caused_counts(self) -> dict[str, int]:
        """Findings the change caused, per severity (against the baseline), every severity present."""
        counts = dict.fromkeys((s.value for s in reversed(Severity)), 0)
        for finding in self.findings:
            if self.comparison and self.comparison.status(finding).status == "caused":
                counts[finding.severity.value] += 1
        return counts

    def summary(self) -> dict[str, Any]:
        summary = {
            "images": self.images,
            "classes": self.classes,
            "findings": self.counts(),
            "by_check": self.by_check(),
            "checks_run": self.checks_run,
            "seconds": round(self.seconds, 2),
            "stage_seconds": {stage: round(seconds, 3) for stage, seconds in self.stage_seconds.items()},
            "bottlenecks": self.bottlenecks,
            "accepted": sum(finding.fingerprint in self.accepted for finding in self.findings),
            "properties": self.properties,
            "pairs": self.pairs,
            "neighbours": self.neighbours,
            "out_of_fold": self.out_of_fold,
        }
        if self.comparison is not None:
            summary.update(
                caused=self.caused_counts(),
                fixed=len(self.comparison.fixed),
                shifted={"appeared": self.comparison.shifted(self.findings), "vanished": len(self.comparison.vanished)},
                change=self.change_line(),
            )
        return summary

    def change_line(self) -> str:
        """ "+40 roses, 2 moved tulips -> roses; caused: 1 error, 3 warnings; fixed: 2; 3 shifted on untouched files
        (2 appeared, 1 vanished)" (with a baseline): what the change did, apart from what the audit's models moved."""
        if self.comparison is None:
            return ""
        counts = self.caused_counts().items()
        caused = [f"{n} {Severity(severity).noun}{'s' if n != 1 else ''}" for severity, n in counts if n]
        fixed = len(self.comparison.fixed)
        line = f"{self.comparison.diff.summary()}; caused: {', '.join(caused) or 'none'}; fixed: {fixed}"
        appeared, vanished = self.comparison.shifted(self.findings), len(self.comparison.vanished)
        if appeared or vanished:
            line += (
                f"; {appeared + vanished} shifted on untouched files ({appeared} appeared, {vanished} vanished), "
                "neither caused nor fixed"
            )
        return line
