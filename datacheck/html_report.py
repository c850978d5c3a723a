"""The audit as one self-contained HTML page a reviewer works through: the gate's verdict, a per-class overview, the
change against a baseline, and every finding with its pictures, filtered, sorted and searched in the page.

The markup is datacheck/templates/audit.html (Jinja2, autoescaped); this module only decides what the page shows.
Pictures are inline data URIs, so the page opens offline as a lone CI artifact.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from datacheck.audit_formats import finding_mark, findings_by_check, plural, shown_value
from datacheck.baseline import FindingStatus
from datacheck.findings import AuditReport, Finding, Severity
from datacheck.registry import check_class
from retrain.core.dataset import IMAGE_EXTENSIONS
from retrain.core.display import printable
from retrain.core.thumbnails import thumbnail_uri

# Bounds that keep an audit with thousands of findings a page a browser opens (5,000 findings: under 10 MB). Pictures
# go to each check's findings in turn (and the change's files) until PICTURE_BYTES of them are embedded; past that a
# finding names its files. Past LISTED_FINDINGS (shared fairly among the checks) findings are left to the JSON.
THUMBNAIL_SIDE = 120
PICTURE_BYTES = 5_000_000
THUMBNAILS_PER_FINDING = 6
LISTED_FINDINGS = 5000
LISTED_PER_CHANGE = 200
SPLITS = ("training", "validation", "testing")
OVER_BUDGET = f"not pictured: the page's {PICTURE_BYTES / 1e6:.0f} MB of thumbnails are spent"


@dataclass(frozen=True)
class Figure:
    """One image of a finding or of the change: its thumbnail, else why there is none, and what it says under it."""

    path: str
    picture: str | None
    missing: str  # why there is no picture ("" when there is one)
    caption: str  # values kept for this file (its split)
    heading: str = ""  # above its path: from which class to which a move took it


@dataclass(frozen=True)
class Card:
    """One finding as the page draws it; ``classes`` and ``score`` are what the page's filters and sort read."""

    finding: Finding
    mark: str  # caused, shifted, accepted, ""
    status: str  # against the baseline: caused, shifted, unchanged ("" without one)
    badges: list[str]
    details: list[tuple[str, str]]
    message: str
    changed_members: str
    figures: list[Figure]
    named: list[str]  # files named but not pictured
    not_pictured: str  # why some of its images have no thumbnail ("" when all do)
    over_budget: bool  # its images have no thumbnails: the page's budget for them was spent
    classes: list[str]
    score: float | None

    @property
    def filters(self) -> str:
        """The classes the finding concerns, as JSON for the page's script (an attribute value, escaped)."""
        return json.dumps(self.classes)


@dataclass(frozen=True)
class CheckSection:
    """A check's findings: its worst severity, the advice they share, the cards the page lists and how many."""

    check: str
    anchor: str
    worst: Severity
    advice: str
    cards: list[Card]
    total: int
    caused: int

    @property
    def left_out(self) -> int:
        return self.total - len(self.cards)


@dataclass(frozen=True)
class ClassRow:
    """A line of the per-class overview; ``link`` filters the page to the class."""

    label: str
    link: str
    images: int
    splits: list[int]
    findings: int
    caused: int


@dataclass(frozen=True)
class ChangeList:
    """Files the change added, removed, moved...: with thumbnails (``figures``) or as lines of text (``lines``)."""

    kind: str
    title: str
    total: int
    figures: list[Figure] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    @property
    def left_out(self) -> int:
        return self.total - len(self.figures or self.lines)


class PictureBudget:
    """Thumbnails until PICTURE_BYTES of them are embedded: a finding's pictures fit whole or not at all, so the page
    never shows half a group. Each file is decoded once, through the guarded decoder (about 4 ms a thumbnail)."""

    def __init__(self, root: Path, budget: int) -> None:
        self.root = root
        self.left = budget
        self.spent = False
        self.embedded = 0
        self._uris: dict[str, str | None] = {}

    def take(self, paths: list[str]) -> dict[str, str | None] | None:
        """The paths' thumbnails (None for a file that does not decode), or None when they no longer fit."""
        if self.spent:
            return None
        uris = {path: self._uri(path) for path in paths}
        cost = sum(len(uri) for uri in uris.values() if uri)
        if cost > self.left:
            self.spent = True
            return None
        self.left -= cost
        self.embedded += sum(uri is not None for uri in uris.values())
        return uris

    def _uri(self, path: str) -> str | None:
        if path not in self._uris:
            self._uris[path] = thumbnail_uri(self.root / path, THUMBNAIL_SIDE)
        return self._uris[path]


_ENVIRONMENT = Environment(
    loader=PackageLoader("datacheck", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENVIRONMENT.filters["shown"] = printable  # a name as people see it: no byte of it a control character or a line break


def _prose(text: str) -> Markup:
    """A message or advice as the terminal shows it, escaped, with its `code` spans (file names, commands) drawn as
    code rather than as backticks."""
    return Markup(_CODE_SPAN.sub(r"<code>\1</code>", str(escape(printable(text)))))


_CODE_SPAN = re.compile(r"`([^`<>]+)`")
_ENVIRONMENT.filters["prose"] = _prose


def render_html(report: AuditReport) -> str:
    """The page. Only pictured files are decoded again, one after another: a thread pool was no faster on two cores
    (benchmarks/README.md)."""
    groups = list(findings_by_check(report))
    shares = _fair_shares([len(findings) for _, findings in groups], LISTED_FINDINGS)
    listed = [(check, findings[:share]) for (check, findings), share in zip(groups, shares, strict=True)]
    images = {check: [_images(report, finding) for finding in findings] for check, findings in listed}
    budget = PictureBudget(Path(report.dataset), PICTURE_BYTES)
    pictures = _pictures(report, images, budget)
    sections = []
    for (check, everything), (_, shown) in zip(groups, listed, strict=True):
        advice = _advice(everything)
        cards = [
            _card(report, finding, images[check][index], advice, pictures.get((check, index)))
            for index, finding in enumerate(shown)
        ]
        sections.append(_section(report, check, everything, cards))
    cards = [card for section in sections for card in section.cards]
    return _ENVIRONMENT.get_template("audit.html").render(
        report=report,
        verdict=_verdict(report),
        counts=[(severity, report.counts()[severity.value]) for severity in reversed(Severity)],
        caused=[(severity, report.caused_counts()[severity.value]) for severity in reversed(Severity)],
        accepted=sum(finding.fingerprint in report.accepted for finding in report.findings),
        shifted=report.comparison.shifted(report.findings) if report.comparison else 0,
        class_rows=_class_rows(report),
        splits=_splits(report),
        sections=sections,
        change=_change(report, pictures),
        pictures=budget,
        unpictured=sum(card.over_budget for card in cards),
        picture_mb=PICTURE_BYTES / 1e6,
        filter_classes=sorted({label for card in cards for label in card.classes}),
        thumbnail_side=THUMBNAIL_SIDE,
        plural=plural,
    )


def _fair_shares(sizes: list[int], limit: int) -> list[int]:
    """How many of each check's findings the page lists: all when they fit, else an equal share each, a small check's
    unused share going to the others."""
    shares = [0] * len(sizes)
    left = limit
    while left > 0 and any(share < size for share, size in zip(shares, sizes, strict=True)):
        open_checks = [i for i, size in enumerate(sizes) if shares[i] < size]
        each = max(1, left // len(open_checks))
        for i in open_checks:
            taken = min(each, sizes[i] - shares[i], left)
            shares[i] += taken
            left -= taken
    return shares


def _images(report: AuditReport, finding: Finding) -> list[str]:
    """The image files a finding names, which get thumbnails: a class-level finding names folders, so none."""
    root = Path(report.dataset)
    return [
        path
        for path in finding.paths
        if path in report.manifest or (Path(path).suffix.lower() in IMAGE_EXTENSIONS and (root / path).is_file())
    ]


def _pictures(
    report: AuditReport, images: dict[str, list[list[str]]], budget: PictureBudget
) -> dict[tuple[str, int], dict[str, str | None]]:
    """Thumbnails by (stream, index): the change's added and moved files and each check's findings take turns, so a
    page over its budget still pictures the first findings of every check."""
    streams: list[tuple[str, list[list[str]]]] = []
    if report.comparison is not None:
        diff = report.comparison.diff
        streams.append(("added", [[entry.path] for entry in diff.added[:LISTED_PER_CHANGE]]))
        streams.append(("moved", [[move.target] for move in diff.moved[:LISTED_PER_CHANGE]]))
    streams += [(check, [paths[:THUMBNAILS_PER_FINDING] for paths in of_check]) for check, of_check in images.items()]
    pictures = {}
    for stream, index, paths in _taking_turns(streams):
        taken = budget.take(paths) if paths else {}
        if taken is None:
            break
        pictures[stream, index] = taken
    return pictures


def _taking_turns(streams: list[tuple[str, list[list[str]]]]) -> Iterator[tuple[str, int, list[str]]]:
    for index in range(max((len(items) for _, items in streams), default=0)):
        for stream, items in streams:
            if index < len(items):
                yield stream, index, items[index]


def _verdict(report: AuditReport) -> str:
    """The gate's line after PASSED or FAILED: which options, and what fails it."""
    return report.gate.verdict.removeprefix("passes ").removeprefix("fails ")


def _classes_of(report: AuditReport, finding: Finding) -> list[str]:
    """The classes a finding concerns: its files' classes, or the class folders it names."""
    labels = set()
    for path in finding.paths:
        entry = report.manifest.get(path)
        label = entry.label if entry is not None else path.split("/", 1)[0]
        if entry is not None or label in report.classes:
            labels.add(printable(label))
    return sorted(labels)


def _splits(report: AuditReport) -> list[str]:
    found = {entry.split for entry in report.manifest.values()}
    return [split for split in SPLITS if split in found] + sorted(found - set(SPLITS))


def _class_rows(report: AuditReport) -> list[ClassRow]:
    """Per class: its images, in each split, and the findings that concern it (and those the change caused)."""
    splits = _splits(report)
    per_split = Counter((entry.label, entry.split) for entry in report.manifest.values())
    findings, caused = Counter(), Counter()
    for finding in report.findings:
        for label in _classes_of(report, finding):
            findings[label] += 1
            caused[label] += finding_mark(report, finding) == "caused"
    return [
        ClassRow(
            printable(label),
            "#class=" + quote(printable(label), safe=""),
            count,
            [per_split[label, split] for split in splits],
            findings[printable(label)],
            caused[printable(label)],
        )
        for label, count in sorted(report.classes.items())
    ]


def _anchor(check: str) -> str:
    return "check-" + "".join(char if char.isalnum() or char == "_" else "-" for char in check)


def _section(report: AuditReport, check: str, findings: list[Finding], cards: list[Card]) -> CheckSection:
    worst = max((finding.severity for finding in findings), key=lambda severity: severity.rank)
    caused = sum(finding_mark(report, finding) == "caused" for finding in findings)
    return CheckSection(check, _anchor(check), worst, _advice(findings), cards, len(findings), caused)


def _advice(findings: list[Finding]) -> str:
    """What a check's findings advise: the check's own line of advice (as the terminal prints it); for a check from a
    baseline this version no longer has, the advice their messages share (after the last colon), else the first's."""
    if advice := check_class(findings[0].check).advice:
        return advice
    tails = {finding.message.rsplit(": ", 1)[-1] for finding in findings}
    return tails.pop() if len(tails) == 1 else findings[0].message


def _card(
    report: AuditReport, finding: Finding, images: list[str], advice: str, taken: dict[str, str | None] | None
) -> Card:
    """One finding: its marks, its own values in words, its message where it is not the check's advice (or where
    badges tell findings of one check apart), its pictures side by side and the files it names besides."""
    check = check_class(finding.check)
    candidates = images[:THUMBNAILS_PER_FINDING]
    figures = [_figure(report, finding, path, taken[path]) for path in candidates] if taken is not None else []
    pictured = {path for path in candidates if taken is not None}
    named = [printable(path) for path in finding.paths if path not in pictured and path != finding.details.get("label")]
    not_pictured = ""
    over_budget = taken is None and bool(candidates)
    if over_budget:
        not_pictured = OVER_BUDGET
    elif len(images) > len(candidates):
        not_pictured = f"{len(images) - len(candidates)} more images not pictured (named above)"
    status = report.comparison.status(finding) if report.comparison else None
    badges = check.badges(finding.details)
    values = _values(finding)
    own = finding.message != advice and (not values or bool(badges))
    return Card(
        finding=finding,
        mark=finding_mark(report, finding),
        status=status.status if status else "",
        badges=badges,
        details=values,
        message=finding.message if own else "",
        changed_members=_members_changed(status),
        figures=figures,
        named=named,
        not_pictured=not_pictured,
        over_budget=over_budget,
        classes=_classes_of(report, finding),
        score=check.score(finding.details),
    )


def _values(finding: Finding) -> list[tuple[str, str]]:
    """A finding's own values as its check describes them, in words; never a structure (a dict or a list of them)."""
    return [
        (printable(name), printable(shown_value(value)))
        for name, value in check_class(finding.check).describe(finding.details)
        if not _structured(value)
    ]


def _structured(value: object) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list | tuple) and any(isinstance(item, dict | list | tuple) for item in value)
    )


def _members_changed(status: FindingStatus | None) -> str:
    """A group that gained or lost members against the baseline says which."""
    if status is None or not (status.gained or status.lost):
        return ""
    gained, lost = (", ".join(map(printable, paths)) or "none" for paths in (status.gained, status.lost))
    return f"gained: {gained}; lost: {lost}"


def _figure(report: AuditReport, finding: Finding, path: str, picture: str | None) -> Figure:
    """A thumbnail with its path and per-path values (the split of each copy); the reason when the file does not
    decode."""
    per_path = [
        f"{printable(key)} {printable(shown_value(value))}"
        for key, value in check_class(finding.check).per_path(finding.details, path)
    ]
    entry = report.manifest.get(path)
    split = [f"split {printable(entry.split)}"] if entry is not None and not per_path else []
    missing = "" if picture is not None else _why_no_picture(report, finding, path)
    return Figure(printable(path), picture, missing, ", ".join(per_path + split))


def _why_no_picture(report: AuditReport, finding: Finding, path: str) -> str:
    known = check_class(finding.check).missing_picture(finding.details)
    if known is not None:
        return known
    return _why_not_decoded(report, path)


def _why_not_decoded(report: AuditReport, path: str) -> str:
    if not (Path(report.dataset) / path).exists():
        return "no picture: the file is no longer there"
    return "no picture: the file cannot be decoded"


def _change(report: AuditReport, pictures: dict[tuple[str, int], dict[str, str | None]]) -> list[ChangeList]:
    """With a baseline: the files the change added and moved, pictured; then those it removed, changed and renamed,
    the copies it added of photos already there, the findings it fixed and those that vanished from untouched files."""
    if report.comparison is None:
        return []
    diff, comparison = report.comparison.diff, report.comparison
    added = [
        _change_figure(report, entry.path, pictures.get(("added", index)), "")
        for index, entry in enumerate(diff.added[:LISTED_PER_CHANGE])
    ]
    moved = [
        _change_figure(
            report, move.target, pictures.get(("moved", index)), f"{move.source_label} → {move.target_label}"
        )
        for index, move in enumerate(diff.moved[:LISTED_PER_CHANGE])
    ]
    lists = [
        ChangeList("added", "added", len(diff.added), figures=added),
        ChangeList("moved", "moved between classes", len(diff.moved), figures=moved),
        _lines("removed", "removed", [entry.path for entry in diff.removed]),
        _lines("changed", "changed (same path, new content)", [entry.path for entry in diff.changed]),
        _lines("renamed", "renamed", [f"{move.source} → {move.target}" for move in diff.renamed]),
        _lines(
            "copies",
            "added copies of photos already there",
            [f"{d.path} copies {', '.join(d.existing)} ({d.check})" for d in diff.duplicates],
        ),
        _lines("fixed", "fixed findings", [f"{f.check}: {', '.join(f.paths)}" for f in comparison.fixed]),
        _lines(
            "vanished",
            "findings that vanished from untouched files (shifted, not fixed)",
            [f"{f.check}: {', '.join(f.paths)}" for f in comparison.vanished],
        ),
    ]
    return [change for change in lists if change.total]


def _change_figure(report: AuditReport, path: str, taken: dict[str, str | None] | None, moved: str) -> Figure:
    """An added or moved file: its thumbnail (a move says from which class to which above its path)."""
    if taken is None:
        return Figure(printable(path), None, OVER_BUDGET, "", printable(moved))
    picture = taken.get(path)
    missing = "" if picture is not None else _why_not_decoded(report, path)
    return Figure(printable(path), picture, missing, "", printable(moved))


def _lines(kind: str, title: str, items: list[str]) -> ChangeList:
    return ChangeList(kind, title, len(items), lines=[printable(item) for item in items[:LISTED_PER_CHANGE]])
