"""The audit's gate is judged once, in the audit: the exit code, the pytest items and the page all read it."""

from __future__ import annotations

from datacheck.findings import AuditReport, Finding, Severity

BROKEN = Finding("corrupt_image", Severity.ERROR, ("daisy/a.jpg",), "truncated", fingerprint="corrupt_image:1")
SMALL = Finding("too_few_images", Severity.WARNING, ("daisy",), "30 images", fingerprint="too_few_images:2")


def _report(*findings: Finding, accepted: dict[str, str] | None = None, fail_on: str = "error") -> AuditReport:
    return AuditReport("photos", list(findings), 30, {"daisy": 30}, ["corrupt_image"], 1.0, accepted=accepted or {},
                       fail_on=fail_on)  # fmt: skip


def test_a_finding_at_or_above_fail_on_fails_the_gate_and_says_how_many() -> None:
    gate = _report(BROKEN, SMALL).gate
    assert not gate.passed and gate.failing == (BROKEN,)
    assert gate.verdict == "fails --fail-on error: 1 finding at or above error"
    assert not _report(BROKEN, SMALL, fail_on="warning").gate.passed
    assert _report(SMALL).gate.verdict == "passes --fail-on error"
    assert _report(BROKEN, fail_on="never").gate.passed


def test_an_accepted_finding_never_fails_the_gate() -> None:
    gate = _report(BROKEN, accepted={BROKEN.fingerprint: "a placeholder we keep"}).gate
    assert gate.passed and gate.failing == ()
