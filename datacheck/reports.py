"""Reporters: the same AuditReport as a rich table for people, JSON for machines, Markdown for pull requests, and
GitHub workflow annotations."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from datacheck.findings import AuditReport, Finding, Severity
from retrain.core.display import printable

FORMATS = ("table", "json", "markdown", "github")
# Findings shown per check in the table and the Markdown report; JSON always has all of them.
EXAMPLES = 5
STYLES = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
NAMES = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
ICONS = {Severity.ERROR: "🛑", Severity.WARNING: "⚠️", Severity.INFO: "ℹ️"}


def _by_check(report: AuditReport) -> Iterator[tuple[str, list[Finding]]]:
    """Findings grouped by check, in report order (most severe first); with a baseline, new findings first."""
    groups: dict[str, list[Finding]] = {}
    for finding in report.findings:
        groups.setdefault(finding.check, []).append(finding)
    for check, findings in groups.items():
        yield check, sorted(findings, key=lambda finding: _mark(report, finding) != "new")


def _mark(report: AuditReport, finding: Finding) -> str:
    """ "new", "changed" or "accepted" (with a baseline or accepted findings), else ""."""
    if finding.fingerprint in report.accepted:
        return "accepted"
    status = report.comparison.status(finding).status if report.comparison is not None else ""
    return "" if status == "unchanged" else status


def _headline(report: AuditReport) -> str:
    counts = report.counts()
    found = ", ".join(_plural(counts[severity.value], name) for severity, name in NAMES.items())
    where = f"{_plural(report.images, 'image')} in {_plural(len(report.classes), 'class')}"
    return f"{where}: {found} ({report.seconds:.1f} s)"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}{'es' if noun.endswith('s') else 's'}"


def render_table(report: AuditReport) -> RenderableType:
    """A rich table grouped by check: severity and count, then the first findings with their paths."""
    if not report.findings:
        return Text(f"No findings. {_headline(report)}", style="green")
    table = Table(title=f"retrain-ci check {escape(printable(report.dataset))}", expand=False)
    table.add_column("check", no_wrap=True)
    table.add_column("count", justify="right")
    table.add_column("severity", no_wrap=True)
    table.add_column("path", overflow="fold")
    table.add_column("what to do")
    for check, findings in _by_check(report):
        table.add_section()
        for index, finding in enumerate(findings[:EXAMPLES]):
            table.add_row(
                check if index == 0 else "",
                str(len(findings)) if index == 0 else "",
                Text(finding.severity.value, style=STYLES[finding.severity]),
                Text(
                    (f"[{_mark(report, finding)}] " if _mark(report, finding) else "")
                    + "\n".join(printable(path) for path in finding.paths[:3])
                    + (f"\n(+{len(finding.paths) - 3} more)" if len(finding.paths) > 3 else "")
                ),
                Text(printable(finding.message)),  # Text, not markup: paths and messages may hold brackets
            )
        if len(findings) > EXAMPLES:
            table.add_row(
                "", "", "", Text(f"+{len(findings) - EXAMPLES} more", style="dim"), "(--format json lists all)"
            )
    return Group(table, Text(_headline(report)), *([Text(report.change_line())] if report.comparison else []))


def render_json(report: AuditReport) -> str:
    """Paths as they are, in JSON's own escapes; a byte of a name that is not valid UTF-8 as its \\udcXX escape,
    which Python's ``json`` and ``os.fsencode`` turn back into the byte."""
    text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
    return re.sub("[\ud800-\udfff]", lambda match: f"\\u{ord(match.group()):04x}", text)


def render_markdown(report: AuditReport) -> str:
    """For a pull-request comment or ``$GITHUB_STEP_SUMMARY``: a summary table, then the findings of each check."""
    lines = [f"## Dataset check: {_code(report.dataset)}", "", _headline(report), ""]
    lines += _markdown_change(report)
    if not report.findings:
        return "\n".join([*lines, "No findings."]) + "\n"
    lines += ["| check | severity | findings |", "| --- | --- | ---: |"]
    groups = list(_by_check(report))
    lines += [f"| `{check}` | {ICONS[f[0].severity]} {f[0].severity.value} | {len(f)} |" for check, f in groups]
    for check, findings in groups:
        lines += ["", f"### `{check}` ({len(findings)})", ""]
        shown = [_markdown_item(finding, _mark(report, finding)) for finding in findings]
        lines += shown[:EXAMPLES]
        if len(shown) > EXAMPLES:
            lines += ["", f"<details><summary>{len(shown) - EXAMPLES} more</summary>", "", *shown[EXAMPLES:]]
            lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _markdown_change(report: AuditReport) -> list[str]:
    """The change against the baseline in a line, then the copies it adds of photos already there and what it fixed."""
    if report.comparison is None:
        return []
    lines = [f"**Change:** {_markdown_text(report.change_line())}", ""]
    for duplicate in report.comparison.diff.duplicates:
        copies = ", ".join(_code(path) for path in duplicate.existing)
        lines.append(f"- added {_code(duplicate.path)} copies {copies} (`{duplicate.check}`)")
    fixed = report.comparison.fixed
    lines += [f"- **fixed** {_markdown_item(finding, '')[2:]} (`{finding.check}`)" for finding in fixed]
    return [*lines, ""] if len(lines) > 2 else lines


def _markdown_item(finding: Finding, mark: str) -> str:
    paths = ", ".join(_code(path) for path in finding.paths)
    return f"- {f'**{mark}** ' if mark else ''}{paths}: {_markdown_text(finding.message)}"


def _code(text: str) -> str:
    """A code span no name can break out of: one line, fenced by more backticks than any run inside it."""
    shown = printable(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", shown)), default=0) + 1)
    pad = " " if shown[:1] in ("`", " ") or shown[-1:] in ("`", " ") else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


def _markdown_text(text: str) -> str:
    """Plain text on one line: Markdown and HTML characters escaped, so that it renders as written."""
    shown = re.sub(r"([\\`*_\[\]|#])", r"\\\1", printable(text))
    return shown.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_github(report: AuditReport) -> str:
    """``::error file=...::`` workflow commands, one per finding, on its first path; notes become ``::notice``."""
    lines = []
    for finding in report.findings:
        command = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}[finding.severity]
        others = f" (also: {', '.join(finding.paths[1:])})" if len(finding.paths) > 1 else ""
        properties = f"title={_escape_property(finding.check)}"
        if finding.paths:
            location = f"{report.dataset.rstrip('/')}/{finding.paths[0]}"
            properties = f"file={_escape_property(printable(location))},{properties}"
        lines.append(f"::{command} {properties}::{_escape_data(printable(finding.message + others))}")
    return "\n".join(lines) + ("\n" if lines else "")


def _escape_data(text: str) -> str:
    """The runner's own escapes: with no line break left, no part of a name can start a workflow command."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
