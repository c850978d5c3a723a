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

from datacheck.findings import AuditReport, Finding, Severity
from datacheck.registry import check_class
from retrain.core.display import markdown_text, printable

FORMATS = ("table", "json", "markdown", "github", "html")
# Findings shown per check in the Markdown report; the table and JSON have all of them.
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


def render_table(report: AuditReport) -> RenderableType:
    """For people, the way linters print: per check a heading with its count and what to do, then one line per
    finding that starts with its whole path (``DIR/relative/path``, clickable), its details after it."""
    if not report.findings:
        return Text(f"No findings. {_headline(report)}", style="green")
    checks = [
        FindingsOfCheck(report.dataset, check, findings, lambda finding: finding_mark(report, finding))
        for check, findings in findings_by_check(report)
    ]
    # Class names in it come from the baseline: escaped, and never wrapped, so no line can start with its text.
    change = [Text(printable(report.change_line()), no_wrap=True, overflow="ignore")] if report.comparison else []
    return Group(*checks, Text(_headline(report)), *change)


class FindingsOfCheck:
    """One check's findings, laid out at render time to the console's width: a path is never wrapped or cut, the
    details after it are cut (with an ellipsis) where the line would pass the width."""

    def __init__(self, dataset: str, check: str, findings: list[Finding], mark: Callable[[Finding], str]) -> None:
        self.folder = dataset.rstrip("/") + "/"
        self.check = check
        self.findings = findings
        self.mark = mark  # "caused", "shifted", "accepted" against a baseline, else ""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self._heading()
        advice = self.findings[0].message
        yield from (Text("  " + line) for line in _wrapped(printable(advice), options.max_width - 2))
        mixed = len({finding.severity for finding in self.findings}) > 1
        for finding in self.findings:
            detail = _detail(finding, advice)
            for index, path in enumerate(finding.paths or ("",)):
                shown = _path_detail(finding, path) if index else detail
                severity = f"{finding.severity.noun} " if mixed and not index else ""
                yield self._line(finding, index, path, severity + shown, options.max_width)
        yield Text()

    def _heading(self) -> Text:
        """``check: 1 error, 2 warnings``."""
        counts = Counter(finding.severity for finding in self.findings)
        heading = Text(self.check, style="bold")
        for index, severity in enumerate(severity for severity in reversed(Severity) if counts[severity]):
            heading.append(": " if index == 0 else ", ")
            heading.append(plural(counts[severity], severity.noun), style=STYLES[severity])
        return heading

    def _line(self, finding: Finding, index: int, path: str, detail: str, width: int) -> Text:
        """``[new ]DIR/path  details``; a group's further paths indented under its first."""
        line = Text(no_wrap=True, overflow="ignore")
        mark = self.mark(finding) if index == 0 else ""
        if mark:
            line.append(f"[{mark}] ", style="bold magenta")
        elif index > 0:
            line.append("  ")
        line.append(printable(self.folder + path if path else self.folder.rstrip("/")))
        shown = _fit(printable(detail).split(), width - line.cell_len - 2)
        if shown:
            line.append("  " + shown, style="dim")
        return line


def _wrapped(text: str, width: int) -> list[str]:
    """Prose wrapped between words only: a name or a flag (``--testing-percentage``) stays whole."""
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)


def _fit(words: list[str], room: int) -> str:
    """As many whole words as fit in ``room`` columns, with an ellipsis when some are left out; never half a number."""
    for count in range(len(words), 0, -1):
        shown = " ".join(words[:count]) + ("" if count == len(words) else " …")
        if cell_len(shown) <= room:
            return shown
    return ""


def _detail(finding: Finding, advice: str) -> str:
    """A finding's own values (``key=value``, the JSON's names), else its message when the heading's is not it."""
    shown = [
        f"{key}={shown_value(value)}" for key, value in finding.details.items() if not _structured(value)
    ] + _path_detail(finding, finding.paths[0] if finding.paths else "").split()
    if shown:
        return " ".join(shown)
    return "" if finding.message == advice else finding.message


def _structured(value: object) -> bool:
    """Values kept per path or per pair (a dict, a list of dicts): the JSON and the HTML page show them, not a line."""
    return isinstance(value, dict) or (
        isinstance(value, list | tuple) and any(isinstance(item, dict) for item in value)
    )


def _path_detail(finding: Finding, path: str) -> str:
    """Values a finding keeps per path (the split of each copy), as its check shows them."""
    return " ".join(
        f"{key}={shown_value(value)}" for key, value in check_class(finding.check).per_path(finding.details, path)
    )


def shown_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def render_markdown(report: AuditReport) -> str:
    """For a pull-request comment or ``$GITHUB_STEP_SUMMARY``: a summary table, then the findings of each check."""
    lines = [f"## Dataset check: {_code(report.dataset)}", "", _headline(report), ""]
    lines += _markdown_change(report)
    if not report.findings:
        return "\n".join([*lines, "No findings."]) + "\n"
    lines += ["| check | severity | findings |", "| --- | --- | ---: |"]
    groups = list(findings_by_check(report))
    lines += [f"| `{check}` | {ICONS[f[0].severity]} {f[0].severity.value} | {len(f)} |" for check, f in groups]
    for check, findings in groups:
        lines += ["", f"### `{check}` ({len(findings)})", ""]
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
