"""The audit as one self-contained HTML page for people: the summary, the change against a baseline, and each finding
with thumbnails of its images. Pictures are inline data URIs, so the page opens offline as a lone CI artifact."""

from __future__ import annotations

import html
from collections.abc import Iterable
from pathlib import Path

from datacheck.audit_formats import finding_mark, findings_by_check, plural, shown_value
from datacheck.baseline import DatasetDiff
from datacheck.findings import AuditReport, Finding, Severity
from datacheck.registry import check_class
from retrain.core.dataset import IMAGE_EXTENSIONS
from retrain.core.display import printable
from retrain.core.thumbnails import THUMBNAIL_SIZE, thumbnail_uri

# Bounds that keep a 100,000-photo audit with thousands of findings a page a browser opens: findings past the first
# PICTURED of a check are one line each, past LISTED not shown (the JSON has them all); so are long file lists.
THUMBNAILS_PER_FINDING = 6
PICTURED_PER_CHECK = 12
LISTED_PER_CHECK = 200
LISTED_PER_CHANGE = 200


def render_html(report: AuditReport) -> str:
    """The page; only the pictured files are decoded again (through the guarded decoder), one after another: a
    thumbnail costs about 4 ms, and a thread pool was no faster on two cores (benchmarks/README.md)."""
    groups = list(findings_by_check(report))
    root = Path(report.dataset)
    pictures = {
        path: thumbnail_uri(root / path)
        for _, findings in groups
        for finding in findings[:PICTURED_PER_CHECK]
        for path in _images(report, finding)[:THUMBNAILS_PER_FINDING]
    }
    body = [
        f"<h1>Dataset audit: {_text(report.dataset)}</h1>",
        _summary(report),
        _change(report),
        *(_check_section(report, check, findings, pictures) for check, findings in groups),
    ]
    return _PAGE.format(size=THUMBNAIL_SIZE, title=_text(f"audit of {report.dataset}"), body="\n".join(body))


def _text(text: object) -> str:
    """A name as people see it, then as HTML: no byte of it can be markup, a control character or a broken line."""
    return html.escape(printable(text))


def _images(report: AuditReport, finding: Finding) -> list[str]:
    """The image files a finding names, which get thumbnails: a class-level finding names folders, so none."""
    root = Path(report.dataset)
    return [
        path
        for path in finding.paths
        if path in report.manifest or (Path(path).suffix.lower() in IMAGE_EXTENSIONS and (root / path).is_file())
    ]


def _summary(report: AuditReport) -> str:
    counts = report.counts()
    rows = {
        "dataset": _text(report.dataset),
        "images": f"{report.images} in {plural(len(report.classes), 'class')}",
        "findings": _severities(counts),
        "gate": _gate(report),
        "audit time": f"{report.seconds:.1f} s",
    }
    if report.comparison is not None:
        rows["findings"] += f" <span class=new>(caused by the change: {_severities(report.caused_counts())})</span>"
        rows["baseline"] = _text(report.comparison.baseline)
    accepted = sum(finding.fingerprint in report.accepted for finding in report.findings)
    if accepted:
        rows["accepted"] = f"{accepted} (never fail the gate)"
    table = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows.items())
    return f"<table class=facts>{table}</table>{_per_check(report)}"


def _severities(counts: dict[str, int]) -> str:
    shown = [
        f"<span class={severity.value}>{plural(counts[severity.value], severity.noun)}</span>"
        for severity in reversed(Severity)
    ]
    return ", ".join(shown)


def _gate(report: AuditReport) -> str:
    """What ``--fail-on`` (and ``--fail-on-new``) make of this audit, as the exit code says it."""
    gate = report.gate
    if gate.passed:
        return f"<span class=pass>passes</span> <code>{gate.option}</code>"
    which = "finding the change caused" if gate.fail_on_new else "finding"
    return (
        f"<span class=fail>fails</span> <code>{gate.option}</code>: {plural(len(gate.failing), which)} at or above "
        f"{gate.fail_on}"
    )


def _per_check(report: AuditReport) -> str:
    if not report.findings:
        return "<p class=pass>No findings.</p>"
    rows = []
    for check, findings in findings_by_check(report):
        worst = max((finding.severity for finding in findings), key=lambda severity: severity.rank)
        new = sum(finding_mark(report, finding) == "caused" for finding in findings)
        rows.append(
            f"<tr><td><a href='#{_anchor(check)}'>{_text(check)}</a></td><td class={worst.value}>{worst.noun}</td>"
            f"<td>{len(findings)}</td>{f'<td>{new}</td>' if report.comparison else ''}</tr>"
        )
    new_column = "<th>caused</th>" if report.comparison else ""
    return f"<table><tr><th>check</th><th>severity</th><th>findings</th>{new_column}</tr>{''.join(rows)}</table>"


def _anchor(check: str) -> str:
    return "check-" + "".join(char if char.isalnum() or char == "_" else "-" for char in check)


def _change(report: AuditReport) -> str:
    """With a baseline: the change line, per class counts, then the files it added, removed, changed and moved."""
    if report.comparison is None:
        return ""
    diff = report.comparison.diff
    parts = [f"<h2>Change against the baseline</h2><p class=change>{_text(report.change_line())}</p>"]
    parts.append(_per_class(diff))
    parts += [
        _file_list("added", "added", [_text(entry.path) for entry in diff.added]),
        _file_list("removed", "removed", [_text(entry.path) for entry in diff.removed]),
        _file_list("changed", "changed (same path, new content)", [_text(entry.path) for entry in diff.changed]),
        _file_list("moved", "moved between classes", [_moved(move) for move in diff.moved]),
        _file_list(
            "renamed", "renamed", [f"{_text(move.source)} &rarr; {_text(move.target)}" for move in diff.renamed]
        ),
        _file_list(
            "copies",
            "added copies of photos already there",
            [
                f"{_text(d.path)} copies {', '.join(map(_text, d.existing))} <small>({_text(d.check)})</small>"
                for d in diff.duplicates
            ],
        ),
        _file_list(
            "fixed",
            "fixed findings",
            [f"<b>{_text(f.check)}</b>: {', '.join(map(_text, f.paths))}" for f in report.comparison.fixed],
        ),
        _file_list(
            "vanished",
            "findings that vanished from untouched files (shifted, not fixed)",
            [f"<b>{_text(f.check)}</b>: {', '.join(map(_text, f.paths))}" for f in report.comparison.vanished],
        ),
    ]
    return "\n".join(part for part in parts if part)


def _moved(move) -> str:
    """``old class -> new class`` first, since a move is a relabel; then the file's old and new path."""
    return (
        f"<b>{_text(move.source_label)} &rarr; {_text(move.target_label)}</b>: "
        f"{_text(move.source)} &rarr; {_text(move.target)}"
    )


def _per_class(diff: DatasetDiff) -> str:
    per_class = diff.per_class()
    if not per_class:
        return ""
    kinds = ("added", "removed", "changed", "moved_in", "moved_out")
    head = "".join(f"<th>{kind.replace('_', ' ')}</th>" for kind in kinds)
    rows = "".join(
        f"<tr><td>{_text(label)}</td>{''.join(f'<td>{counts.get(kind) or str()}</td>' for kind in kinds)}</tr>"
        for label, counts in per_class.items()
    )
    return f"<table><tr><th>class</th>{head}</tr>{rows}</table>"


def _file_list(kind: str, title: str, items: list[str]) -> str:
    """Up to LISTED_PER_CHANGE items, saying how many are left out; items are HTML already."""
    if not items:
        return ""
    shown = "".join(f"<li>{item}</li>" for item in items[:LISTED_PER_CHANGE])
    more = _left_out(len(items) - LISTED_PER_CHANGE, "more")
    return f"<h3>{html.escape(title)} ({len(items)})</h3><ul class=files id=change-{kind}>{shown}</ul>{more}"


def _left_out(count: int, what: str) -> str:
    return (
        f"<p class=more>{count} {what} not shown here; <code>--format json</code> lists all.</p>" if count > 0 else ""
    )


def _check_section(report: AuditReport, check: str, findings: list[Finding], pictures: dict[str, str | None]) -> str:
    """A check's findings, new ones first: the first PICTURED_PER_CHECK with thumbnails, then one line each."""
    advice = findings[0].message
    cards = [_card(report, finding, pictures, advice) for finding in findings[:PICTURED_PER_CHECK]]
    lines = [_line(report, finding) for finding in findings[PICTURED_PER_CHECK:LISTED_PER_CHECK]]
    pictured_note = ""
    if len(findings) > PICTURED_PER_CHECK:
        pictured_note = f"<p class=more>{len(findings) - PICTURED_PER_CHECK} more without pictures:</p>"
    return (
        f"<section id='{_anchor(check)}'><h2>{_text(check)} ({len(findings)})</h2><p class=advice>{_text(advice)}</p>"
        f"<div class=findings>{''.join(cards)}</div>{pictured_note}{_lines(lines)}"
        f"{_left_out(len(findings) - LISTED_PER_CHECK, 'more findings')}</section>"
    )


def _lines(lines: list[str]) -> str:
    return f"<ul class=files>{''.join(lines)}</ul>" if lines else ""


def _badges(report: AuditReport, finding: Finding) -> str:
    """Severity, the change against a baseline, and what a group of look-alikes is (one picture, one scene)."""
    mark = finding_mark(report, finding)
    badge = f"<span class='badge {finding.severity.value}'>{finding.severity.noun}</span>"
    words = "".join(
        f"<span class='badge kind {_text(word).replace(' ', '-')}'>{_text(word)}</span>"
        for word in check_class(finding.check).badges(finding.details)
    )
    return badge + words + (f"<span class='badge mark {mark}'>{mark}</span>" if mark else "")


def _line(report: AuditReport, finding: Finding) -> str:
    return f"<li>{_badges(report, finding)} {', '.join(map(_text, finding.paths))} {_details(finding)}</li>"


def _card(report: AuditReport, finding: Finding, pictures: dict[str, str | None], advice: str) -> str:
    """One finding: its marks, its own values (else its message when it is not the check's), its pictures. A group of
    look-alikes always shows its message where it is not the check's: one picture and one scene advise differently."""
    badged = bool(check_class(finding.check).badges(finding.details))
    own = finding.message != advice and (not _flat(finding.details.items()) or badged)
    message = f"<p class=message>{_text(finding.message)}</p>" if own else ""
    images = _images(report, finding)
    pictured = images[:THUMBNAILS_PER_FINDING]
    figures = "".join(_figure(report, finding, path, pictures.get(path)) for path in pictured)
    others = [path for path in finding.paths if path not in pictured and path != finding.details.get("label")]
    named = f"<p class=paths>{', '.join(map(_text, others))}</p>" if others else ""
    left_out = len(images) - len(pictured)
    if left_out:
        named += f"<p class=more>{left_out} more images not pictured (named above)</p>"
    caused = finding_mark(report, finding) == "caused"
    classes = "finding" + (" marked" if caused else "") + (" pictured" * bool(pictured))
    return (
        f"<div class='{classes}' data-fingerprint='{_text(finding.fingerprint)}'>"
        f"<div class=head>{_badges(report, finding)} {_details(finding)}</div>"
        f"{message}{_members_changed(report, finding)}{named}<div class=grid>{figures}</div>"
        f"<p class=fingerprint>{_text(finding.fingerprint)}</p></div>"
    )


def _members_changed(report: AuditReport, finding: Finding) -> str:
    """A group that gained or lost members against the baseline says which."""
    status = report.comparison.status(finding) if report.comparison else None
    if status is None or not (status.gained or status.lost):
        return ""
    gained, lost = (", ".join(map(_text, paths)) or "none" for paths in (status.gained, status.lost))
    return f"<p class=message>gained: {gained}; lost: {lost}</p>"


def _details(finding: Finding) -> str:
    """A finding's own values, as its check describes them (by default the JSON's names)."""
    values = [f"{_text(name)} <b>{_text(shown_value(value))}</b>" for name, value in _described(finding)]
    return f"<span class=details>{', '.join(values)}</span>"


def _described(finding: Finding) -> list[tuple[str, object]]:
    return check_class(finding.check).describe(finding.details)


def _flat(items: Iterable[tuple[str, object]]) -> list[tuple[str, object]]:
    return [(key, value) for key, value in items if not isinstance(value, dict)]


def _figure(report: AuditReport, finding: Finding, path: str, picture: str | None) -> str:
    """A thumbnail with its path (and per-path values such as its split); a placeholder with the reason when the
    file does not decode."""
    name = _text(path)
    if picture is not None:
        shown = f'<img src="{picture}" alt="{name}">'
    else:
        shown = f"<div class=placeholder>{_text(_why_no_picture(report, finding, path))}</div>"
    per_path = [
        f"{_text(key)} {_text(shown_value(value))}"
        for key, value in check_class(finding.check).per_path(finding.details, path)
    ]
    entry = report.manifest.get(path)
    split = [f"split {_text(entry.split)}"] if entry is not None and not per_path else []
    return f"<figure>{shown}<figcaption>{name}<br><small>{', '.join(per_path + split)}</small></figcaption></figure>"


def _why_no_picture(report: AuditReport, finding: Finding, path: str) -> str:
    known = check_class(finding.check).missing_picture(finding.details)
    if known is not None:
        return known
    if not (Path(report.dataset) / path).exists():
        return "no picture: the file is no longer there"
    return "no picture: the file cannot be decoded"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }}
table {{ border-collapse: collapse; margin: 1em 0; }} th, td {{ border: 1px solid #ccc; padding: 4px 10px; }}
th {{ text-align: left; background: #f4f4f4; }} .facts td {{ text-align: left; }}
a {{ color: #0645ad; }} code {{ background: #f4f4f4; padding: 0 3px; }}
.error {{ color: #b00020; font-weight: bold; }} .warning {{ color: #a35c00; }} .info {{ color: #00639b; }}
.pass {{ color: #1b7a1b; font-weight: bold; }} .fail {{ color: #b00020; font-weight: bold; }}
.new {{ color: #8e24aa; }} .change {{ font-size: 1.1em; font-weight: bold; }}
.advice {{ color: #555; }} .more {{ color: #555; font-style: italic; }}
.findings {{ display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }}
.finding {{ border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; box-sizing: border-box; flex: 0 1 auto; }}
.finding .message {{ font-size: 12px; color: #555; }}
.finding.pictured {{ width: min-content; min-width: {size}px; }} .finding.pictured .grid {{ flex-wrap: nowrap; }}
.finding.marked {{ border-color: #8e24aa; border-width: 2px; }}
.finding p {{ margin: 4px 0; }} .fingerprint {{ color: #999; font-size: 11px; }}
.badge {{ display: inline-block; border-radius: 3px; padding: 0 6px; margin-right: 4px; font-size: 12px;
  color: white; font-weight: bold; }}
.badge.error {{ background: #b00020; }} .badge.warning {{ background: #c77700; }} .badge.info {{ background: #00639b; }}
.badge.mark {{ background: #8e24aa; }} .badge.accepted {{ background: #777; }}
.badge.one-picture {{ background: #6d4c41; }} .badge.one-scene {{ background: #00796b; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 12px; margin-top: 6px; }}
figure {{ margin: 0; width: {size}px; font-size: 12px; overflow-wrap: anywhere; }}
figure img {{ max-width: 100%; max-height: {size}px; display: block; }}
.placeholder {{ width: {size}px; height: {size}px; box-sizing: border-box; border: 2px dashed #b00020;
  background: #fafafa; color: #b00020; padding: 8px; font-size: 12px; overflow: hidden; }}
ul.files {{ font-family: ui-monospace, monospace; font-size: 13px; overflow-wrap: anywhere; }}
</style></head><body>
{body}
</body></html>
"""
