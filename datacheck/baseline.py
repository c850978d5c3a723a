"""Compare an audit with an earlier one (``check --format json``): what the change did to the files and the findings.

Both audits carry a manifest (every file's path, class, split and content key), so the old files are not needed.
A finding is matched by its fingerprint: the check id and the content keys (or class folders) it names, never its
severity or wording, so a reworded message or a retuned threshold does not turn old debts into new ones.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datacheck.findings import Finding
from datacheck.registry import check_class


@dataclass(frozen=True)
class ManifestEntry:
    """One file of an audited dataset: enough to compare two audits without the files."""

    path: str  # relative to the dataset folder
    label: str
    split: str
    key: str | None  # content key, as the bottleneck cache keys it (None: the file could not be read)


def members(check: str, paths: Iterable[str], entries: Mapping[str, ManifestEntry]) -> tuple[str, ...]:
    """What a finding is about, independent of file names: content keys of its files, its class folders as named."""
    tokens = []
    label_bound = check_class(check).label_bound
    for path in paths:
        entry = entries.get(path)
        if entry is None or entry.key is None:
            tokens.append(path)
        else:
            tokens.append(f"{entry.key}@{entry.label}" if label_bound else entry.key)
    return tuple(sorted(tokens))


def finding_fingerprint(check: str, tokens: Iterable[str]) -> str:
    """Stable across runs, machines, renames and rewordings: the check and what it names."""
    text = "\n".join([check, *tokens])
    return f"{check}:{hashlib.sha1(text.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}"


@dataclass(frozen=True)
class Baseline:
    """An earlier audit, as read back from its JSON (datacheck.audit_json.load_audit_baseline)."""

    path: Path
    manifest: dict[str, ManifestEntry]
    findings: list[Finding]
    change: str = ""  # that audit's own change line against its baseline ("" when it had none)


@dataclass(frozen=True)
class Move:
    """The same content under another class: a relabel, not an add plus a remove."""

    source: str
    target: str
    source_label: str
    target_label: str


@dataclass(frozen=True)
class DuplicateOfExisting:
    """A file the change adds that is a copy of a photo the dataset already had."""

    path: str
    existing: tuple[str, ...]
    check: str


@dataclass
class DatasetDiff:
    """Files added, removed, changed (same path, new content), moved between classes and renamed within one."""

    added: list[ManifestEntry] = field(default_factory=list)
    removed: list[ManifestEntry] = field(default_factory=list)
    changed: list[ManifestEntry] = field(default_factory=list)
    moved: list[Move] = field(default_factory=list)
    renamed: list[Move] = field(default_factory=list)
    duplicates: list[DuplicateOfExisting] = field(default_factory=list)

    def per_class(self) -> dict[str, dict[str, int]]:
        """Per class: added, removed, changed, moved in and moved out, only the classes the change touched."""
        counts: dict[str, Counter] = {}
        for kind, entries in (("added", self.added), ("removed", self.removed), ("changed", self.changed)):
            for entry in entries:
                counts.setdefault(entry.label, Counter())[kind] += 1
        for move in self.moved:
            counts.setdefault(move.source_label, Counter())["moved_out"] += 1
            counts.setdefault(move.target_label, Counter())["moved_in"] += 1
        return {label: dict(counts[label]) for label in sorted(counts)}

    def summary(self) -> str:
        """ "+40 roses, -3 tulips, 2 moved tulips -> roses": the change in one line."""
        parts = [f"+{n} {label}" for label, n in sorted(Counter(e.label for e in self.added).items())]
        parts += [f"-{n} {label}" for label, n in sorted(Counter(e.label for e in self.removed).items())]
        parts += [f"{n} changed in {label}" for label, n in sorted(Counter(e.label for e in self.changed).items())]
        pairs = Counter((move.source_label, move.target_label) for move in self.moved)
        parts += [f"{n} moved {source} -> {target}" for (source, target), n in sorted(pairs.items())]
        if self.renamed:
            parts.append(f"{len(self.renamed)} renamed")
        return ", ".join(parts) or "no file changed"

    def to_dict(self) -> dict[str, Any]:
        def entry(e: ManifestEntry) -> dict[str, Any]:
            return {"path": e.path, "label": e.label, "key": e.key}

        return {
            "summary": self.summary(),
            "per_class": self.per_class(),
            "added": [entry(e) for e in self.added],
            "removed": [entry(e) for e in self.removed],
            "changed": [entry(e) for e in self.changed],
            "moved": [vars(move) for move in self.moved],
            "renamed": [vars(move) for move in self.renamed],
            "duplicates_of_existing": [{**vars(d), "existing": list(d.existing)} for d in self.duplicates],
        }


def diff_manifests(old: Mapping[str, ManifestEntry], new: Mapping[str, ManifestEntry]) -> DatasetDiff:
    """Pair the paths that left with those that arrived by content: another class is a move, the same a rename."""
    diff = DatasetDiff(changed=[new[path] for path in new if path in old and new[path].key != old[path].key])
    gone: dict[str | None, list[ManifestEntry]] = {}
    for path in sorted(set(old) - set(new)):
        gone.setdefault(old[path].key, []).append(old[path])
    for path in sorted(set(new) - set(old)):
        entry = new[path]
        candidates = gone.get(entry.key, []) if entry.key is not None else []
        source = next((c for c in candidates if c.label != entry.label), None) or next(iter(candidates), None)
        if source is None:
            diff.added.append(entry)
            continue
        candidates.remove(source)
        move = Move(source.path, entry.path, source.label, entry.label)
        (diff.moved if source.label != entry.label else diff.renamed).append(move)
    diff.removed = sorted((e for entries in gone.values() for e in entries), key=lambda e: e.path)
    return diff


def duplicates_of_existing(diff: DatasetDiff, findings: Iterable[Finding]) -> list[DuplicateOfExisting]:
    """Added files that a duplicate finding groups with files the dataset already had."""
    added = {entry.path for entry in diff.added}
    named: dict[str, DuplicateOfExisting] = {}
    for finding in findings:
        if not check_class(finding.check).groups_copies:
            continue
        existing = tuple(path for path in finding.paths if path not in added)
        for path in finding.paths:
            if path in added and existing and path not in named:
                named[path] = DuplicateOfExisting(path, existing, finding.check)
    return [named[path] for path in sorted(named)]


CAUSED = "caused"  # names a file the change added, changed or moved in, or a class folder whose count it altered
SHIFTED = "shifted"  # names untouched files only: it appeared because a dataset-wide model or statistic moved
UNCHANGED = "unchanged"


@dataclass(frozen=True)
class FindingStatus:
    """A finding against the baseline: caused by the change, shifted (on untouched files), or unchanged. A group that
    matches an old one (the same copies, grown or shrunk) says which members it gained and lost."""

    status: str
    gained: tuple[str, ...] = ()  # paths, in this audit
    lost: tuple[str, ...] = ()  # paths, in the baseline


@dataclass
class Comparison:
    """An audit against its baseline: the dataset diff and each finding's status; of the baseline's findings that are
    gone, those whose files the change touched (fixed) and those on untouched files (vanished: shifted, not fixed)."""

    baseline: Path
    diff: DatasetDiff
    statuses: dict[str, FindingStatus]  # by fingerprint
    fixed: list[Finding]
    vanished: list[Finding] = field(default_factory=list)

    def status(self, finding: Finding) -> FindingStatus:
        return self.statuses[finding.fingerprint]

    def shifted(self, findings: Iterable[Finding]) -> int:
        """Findings that appeared on untouched files, of ``findings``."""
        return sum(self.status(finding).status == SHIFTED for finding in findings)


@dataclass(frozen=True)
class _Touched:
    """What the change touched, on one side of it: file paths and class folders (a path's first part)."""

    paths: frozenset[str]
    folders: frozenset[str]

    @classmethod
    def of(cls, paths: Iterable[str]) -> _Touched:
        paths = frozenset(paths)
        return cls(paths, frozenset(path.split("/", 1)[0] for path in paths))

    def names(self, paths: Iterable[str]) -> bool:
        """Whether a finding on ``paths`` concerns the change: one of its files, or a class folder it altered."""
        return any(path in self.paths or path in self.folders for path in paths)


def audit_diff(baseline: Baseline, findings: list[Finding], manifest: Mapping[str, ManifestEntry]) -> Comparison:
    """Each finding's status, attributed to the change only where it names what the change touched; a finding whose
    files all came with the change is caused even if it matches an old group."""
    diff = diff_manifests(baseline.manifest, manifest)
    diff.duplicates = duplicates_of_existing(diff, findings)
    added = {entry.path for entry in diff.added}
    now = _Touched.of([*added, *(e.path for e in diff.changed), *(m.target for m in diff.moved)])
    before = _Touched.of(
        [*(e.path for e in diff.removed), *(e.path for e in diff.changed), *(m.source for m in diff.moved)]
    )
    now = _Touched(now.paths, now.folders | before.folders)  # a class that lost photos changed too
    old = {finding.fingerprint: finding for finding in baseline.findings}
    statuses: dict[str, FindingStatus] = {}
    for finding in findings:
        if finding.fingerprint in old:
            old.pop(finding.fingerprint)
            statuses[finding.fingerprint] = FindingStatus(UNCHANGED)
    for finding in findings:
        if finding.fingerprint in statuses:
            continue
        mine = set(members(finding.check, finding.paths, manifest))
        brought = finding.paths and all(path in added for path in finding.paths)
        match = None if brought else _overlapping(finding.check, mine, old.values(), baseline.manifest)
        if match is None:
            statuses[finding.fingerprint] = FindingStatus(CAUSED if now.names(finding.paths) else SHIFTED)
            continue
        old.pop(match.fingerprint)
        theirs = set(members(match.check, match.paths, baseline.manifest))
        gained = tuple(p for p in finding.paths if members(finding.check, [p], manifest)[0] not in theirs)
        lost = tuple(p for p in match.paths if members(match.check, [p], baseline.manifest)[0] not in mine)
        status = CAUSED if now.names(gained) else SHIFTED if gained else UNCHANGED
        statuses[finding.fingerprint] = FindingStatus(status, gained, lost)
    gone = list(old.values())
    fixed = [finding for finding in gone if before.names(finding.paths) or now.names(finding.paths)]
    vanished = [finding for finding in gone if finding not in fixed]
    return Comparison(baseline.path, diff, statuses, fixed, vanished)


def _overlapping(
    check: str, mine: set[str], candidates: Iterable[Finding], manifest: Mapping[str, ManifestEntry]
) -> Finding | None:
    """The baseline's unmatched finding of the same check that shares members with this one: the same group, grown."""
    return next(
        (old for old in candidates if old.check == check and mine & set(members(check, old.paths, manifest))), None
    )
