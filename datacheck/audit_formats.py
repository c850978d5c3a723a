"""Renderers: the same AuditReport as a rich table for people, Markdown for pull requests and GitHub workflow
annotations (JSON for machines is datacheck.audit_json's, the HTML page datacheck.html_report's)."""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.text import Text

from datacheck.findings import AuditGate, AuditReport, Finding, Severity
from datacheck.registry import check_class
from retrain.core.display import markdown_text, printable

FORMATS = ("table", "json", "markdown", "github", "html")
# Findings shown per check in the terminal (all with --verbose) and in the Markdown report (the rest folded).
EXAMPLES = 5
STYLES = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
ICONS = {Severity.ERROR: "🛑", Severity.WARNING: "⚠️", Severity.INFO: "ℹ️"}


def findings_by_check(report: AuditReport) -> Iterator[tuple[str, list[Finding]]]:
    """Findings grouped by check, in report order (most severe first); with a baseline, those the change caused
    first."""
    groups: dict[str, list[Finding]] = {}
    for finding in report.findings:
        groups.setdefault(finding.check, []).append(finding)
    for check, findings in groups.items():
        yield check, sorted(findings, key=lambda finding: finding_mark(report, finding) != "caused")


def finding_mark(report: AuditReport, finding: Finding) -> str:
    """ "caused", "shifted" or "accepted" (with a baseline or accepted findings), else ""."""
    if finding.fingerprint in report.accepted:
        return "accepted"
    status = report.comparison.status(finding).status if report.comparison is not None else ""
    return "" if status == "unchanged" else status


def _headline(report: AuditReport) -> str:
    counts = report.counts()
    found = ", ".join(plural(counts[severity.value], severity.noun) for severity in reversed(Severity))
    where = f"{plural(report.images, 'image')} in {plural(len(report.classes), 'class')}"
    return f"{where}: {found} ({report.seconds:.1f} s)"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}{'es' if noun.endswith('s') else 's'}"


def render_table(report: AuditReport, shown: int | None = EXAMPLES) -> RenderableType:
    """For people, the summary first: the gate's verdict, the counts and, with a baseline, the change. Then per check
    its count, one line of advice and at most ``shown`` findings (None: all), each a path relative to the dataset with
    the values that tell it apart, whole and in the check's order of importance, as many on its line as fit."""
    summary = [_verdict(report.gate), Text(_headline(report))]
    # Names in these come from the baseline and the command line: escaped, and never wrapped (see _may_start_a_line).
    if report.comparison:
        summary.append(Text(f"change: {printable(report.change_line())}", no_wrap=True, overflow="ignore"))
    if not report.findings:
        return Group(*summary)
    summary.append(
        Text(f"files below are in {printable(report.dataset)}", style="dim", no_wrap=True, overflow="ignore")
    )
    checks = [
        FindingsOfCheck(check, findings, lambda finding: finding_mark(report, finding), shown)
        for check, findings in findings_by_check(report)
    ]
    return Group(*summary, Text(), *checks)


def _verdict(gate: AuditGate) -> Text:
    """``FAILED --fail-on error: 2 findings at or above error`` or ``PASSED --fail-on error``, in colour."""
    return Text.assemble((_passed(gate), "bold green" if gate.passed else "bold red"), " ", _gate_reason(gate))


def _passed(gate: AuditGate) -> str:
    return "PASSED" if gate.passed else "FAILED"


def _gate_reason(gate: AuditGate) -> str:
    """The verdict without its verb: ``--fail-on error: 2 findings at or above error``."""
    return gate.verdict.partition(" ")[2]


class FindingsOfCheck:
    """One check's findings, laid out at render time to the console's width: its count and advice, then per finding
    its path (never cut) and its values, whole, as many on the path's line as fit and the rest on the next."""

    def __init__(self, check: str, findings: list[Finding], mark: Callable[[Finding], str], shown: int | None) -> None:
        self.check = check
        self.findings = findings
        self.mark = mark  # "caused", "shifted", "accepted" against a baseline, else ""
        self.shown = shown

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self._heading()
        # A check from a baseline this version no longer has says no advice: its first finding's message instead.
        advice = check_class(self.check).advice or self.findings[0].message
        yield from (Text("  " + line) for line in _wrapped(printable(advice), options.max_width - 2))
        mixed = len({finding.severity for finding in self.findings}) > 1
        for finding in self.findings[: self.shown]:
            yield from self._finding(finding, mixed, options.max_width)
        left_out = len(self.findings) - len(self.findings[: self.shown])
        if left_out:
            yield Text(f"  … and {left_out} more (--verbose or --format json)", style="dim")
        yield Text()

    def _heading(self) -> Text:
        """``check: 1 error, 2 warnings``."""
        counts = Counter(finding.severity for finding in self.findings)
        heading = Text(self.check, style="bold")
        for index, severity in enumerate(severity for severity in reversed(Severity) if counts[severity]):
            heading.append(": " if index == 0 else ", ")
            heading.append(plural(counts[severity], severity.noun), style=STYLES[severity])
        return heading

    def _finding(self, finding: Finding, mixed: bool, width: int) -> Iterator[Text]:
        """``  [caused] class/photo.jpg  value · value``: a group's further paths under its first, each with its own
        values (its split), the finding's values after the last."""
        check = check_class(finding.check)
        for index, path in enumerate(finding.paths or ("",)):
            line = Text("  " if index == 0 else "    ", no_wrap=True, overflow="ignore")  # a long path stays whole
            mark = self.mark(finding) if index == 0 else ""
            if mark:
                line.append(f"[{mark}] ", style="bold magenta")
            line.append(printable(path) if path else "(the dataset folder)")
            per_path = [printable(shown_value(value)) for _, value in check.per_path(finding.details, path)]
            *whole, line = _followed_by(line, per_path, width)
            yield from whole
            if index < len(finding.paths) - 1:
                yield line
        values = [finding.severity.noun] if mixed else []
        values += [printable(_named(name, value)) for name, value in check.highlights(finding.details)]
        yield from _followed_by(line, [value for value in values if value], width)


def _named(name: str, value: object) -> str:
    """``similarity 0.84``, or the value alone when it says what it is; empty when there is none."""
    shown = shown_value(value).strip()
    return f"{name} {shown}" if name and shown else shown


def _followed_by(line: Text, values: list[str], width: int) -> Iterator[Text]:
    """``line`` and the values after it in their order (the most telling first), as many as fit, then the rest on
    lines of their own: each value whole, wrapped between words only when one is wider than a line."""
    separator = "  "
    for value in values:
        too_wide = line.cell_len + cell_len(separator + value) > width
        if too_wide and line.plain.strip() and _may_start_a_line(value):
            yield line
            line, separator = Text("    ", no_wrap=True, overflow="ignore"), ""
        *whole_lines, rest = _wrapped(value, max(width - line.cell_len - len(separator), 20)) or [""]
        for piece in whole_lines:
            line.append(separator + piece, style="dim")
            yield line
            line, separator = Text("    ", no_wrap=True, overflow="ignore"), ""
        line.append(separator + rest, style="dim")
        separator = " · "
    yield line


def _wrapped(text: str, width: int) -> list[str]:
    """Prose wrapped between words only: a name or a flag (``--testing-percentage``) stays whole, and no line starts
    with a word that could start a workflow command."""
    lines: list[str] = []
    for line in textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False):
        if lines and not _may_start_a_line(line):
            lines[-1] += " " + line
        else:
            lines.append(line)
    return lines


def _may_start_a_line(text: str) -> bool:
    """Whether text from a name may begin a line of a CI log: not if a runner would read it as a workflow command."""
    return not text.lstrip().startswith("::")


def shown_value(value: object) -> str:
    """A value as people read it: never a Python repr, even of a list or a mapping."""
    if isinstance(value, dict):
        return ", ".join(f"{shown_value(key)} {shown_value(item)}" for key, item in value.items())
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return ", ".join(map(shown_value, value))
    return str(value)


def render_markdown(report: AuditReport) -> str:
    """For a pull-request comment or ``$GITHUB_STEP_SUMMARY``: a summary table, then the findings of each check."""
    verdict = f"**{_passed(report.gate)}** {_gate_reason(report.gate)}"
    lines = [f"## Dataset check: {_code(report.dataset)}", "", verdict, "", _headline(report), ""]
    lines += _markdown_change(report)
    if not report.findings:
        return "\n".join([*lines, "No findings."]) + "\n"
    lines += ["| check | severity | findings |", "| --- | --- | ---: |"]
    groups = list(findings_by_check(report))
    lines += [f"| `{check}` | {ICONS[f[0].severity]} {f[0].severity.value} | {len(f)} |" for check, f in groups]
    for check, findings in groups:
        lines += ["", f"### `{check}` ({len(findings)})", ""]
        advice = check_class(check).advice
        lines += [markdown_text(advice), ""] if advice else []
        shown = [_markdown_item(finding, finding_mark(report, finding)) for finding in findings]
        lines += shown[:EXAMPLES]
        if len(shown) > EXAMPLES:
            lines += ["", f"<details><summary>{len(shown) - EXAMPLES} more</summary>", "", *shown[EXAMPLES:]]
            lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _markdown_change(report: AuditReport) -> list[str]:
    """The change against the baseline in a line, then the copies it adds of photos already there, what it fixed and
    what vanished from files it did not touch."""
    if report.comparison is None:
        return []
    lines = [f"**Change:** {markdown_text(report.change_line())}", ""]
    for duplicate in report.comparison.diff.duplicates:
        copies = ", ".join(_code(path) for path in duplicate.existing)
        lines.append(f"- added {_code(duplicate.path)} copies {copies} (`{duplicate.check}`)")
    fixed = report.comparison.fixed
    lines += [f"- **fixed** {_markdown_item(finding, '')[2:]} ({_code(finding.check)})" for finding in fixed]
    lines += [
        f"- **vanished** (untouched: shifted, not fixed) {_markdown_item(finding, '')[2:]} ({_code(finding.check)})"
        for finding in report.comparison.vanished
    ]
    return [*lines, ""] if len(lines) > 2 else lines


def _markdown_item(finding: Finding, mark: str) -> str:
    paths = ", ".join(_code(path) for path in finding.paths)
    return f"- {f'**{mark}** ' if mark else ''}{paths}: {markdown_text(finding.message)}"


def _code(text: str) -> str:
    """A code span no name can break out of: one line, fenced by more backticks than any run inside it."""
    shown = printable(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", shown)), default=0) + 1)
    pad = " " if shown[:1] in ("`", " ") or shown[-1:] in ("`", " ") else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


def render_github(report: AuditReport) -> str:
    """``::error file=...::`` workflow commands, one per finding, on its first path; notes become ``::notice``.

    With a baseline, only what the change caused is annotated, so a pull request's files show its own problems rather
    than the dataset's old debts or findings that shifted on untouched files; accepted findings are never annotated.
    One notice counts what was left out.
    """
    lines = []
    annotated = [
        finding
        for finding in report.findings
        if finding.fingerprint not in report.accepted
        and (report.comparison is None or report.comparison.status(finding).status == "caused")
    ]
    for finding in annotated:
        command = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}[finding.severity]
        others = f" (also: {', '.join(finding.paths[1:])})" if len(finding.paths) > 1 else ""
        properties = f"title={_escape_property(finding.check)}"
        if finding.paths:
            location = f"{report.dataset.rstrip('/')}/{finding.paths[0]}"
            properties = f"file={_escape_property(printable(location))},{properties}"
        lines.append(f"::{command} {properties}::{_escape_data(printable(finding.message + others))}")
    left_out = len(report.findings) - len(annotated)
    if left_out:
        why = "not caused by the change (old or shifted) or accepted" if report.comparison else "accepted"
        lines.append(f"::notice title=retrain-ci check::{left_out} more findings, {why}, are in the job summary")
    return "\n".join(lines) + ("\n" if lines else "")


def _escape_data(text: str) -> str:
    """The runner's own escapes: with no line break left, no part of a name can start a workflow command."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
