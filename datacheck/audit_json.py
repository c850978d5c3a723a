"""The audit JSON (``check --format json``, audit.json): written and read back here only, so its shape has one home.

A later audit reads it as its baseline: ``format`` and ``version`` say what it is; anything else is refused with an
InputError that says what it is.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import types
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from datacheck.baseline import Baseline, ManifestEntry
from datacheck.findings import AuditReport, Finding, Severity
from retrain.core.display import is_undecodable, name_bytes, printable
from retrain.core.errors import InputError
from retrain.core.run_json import typed_value

AUDIT_FORMAT = "retrain-ci-audit"
AUDIT_VERSION = 1
# An audit of a million files is a few hundred megabytes; anything far larger is not one.
MAX_BYTES = 1 << 30
# A path names a file (4096 bytes on Linux); anything longer in a baseline is not a file's name.
MAX_NAME = 4096


def render_json(report: AuditReport) -> str:
    """Valid UTF-8: a byte of a name that is not UTF-8 is written as ``printable`` shows it (``\\xff``), and each such
    path's bytes as base64 beside it (``paths_bytes`` of a finding, ``path_bytes`` of a manifest entry)."""
    document = audit_document(report)
    for row in (*document["findings"], *document.get("fixed", ()), *document.get("vanished", ())):
        if any(map(is_undecodable, row["paths"])):
            row["paths_bytes"] = [name_bytes(path) for path in row["paths"]]
    for row in document["manifest"]:
        if is_undecodable(row["path"]):
            row["path_bytes"] = name_bytes(row["path"])
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return re.sub("[\ud800-\udfff]", lambda match: json.dumps(printable(match.group()))[1:-1], text)


def audit_document(report: AuditReport) -> dict[str, Any]:
    """The documented JSON shape; ``format`` and ``version`` let a later audit read it as its baseline."""
    shape: dict[str, Any] = {
        "format": AUDIT_FORMAT,
        "version": AUDIT_VERSION,
        "dataset": report.dataset,
        "summary": report.summary(),
        "findings": [_finding_dict(report, finding) for finding in report.findings],
    }
    if report.comparison is not None:
        shape["baseline"] = str(report.comparison.baseline)
        shape["diff"] = report.comparison.diff.to_dict()
        shape["fixed"] = [_plain(finding) for finding in report.comparison.fixed]
        shape["vanished"] = [_plain(finding) for finding in report.comparison.vanished]
    shape["manifest"] = [vars(entry) for entry in report.manifest.values()]
    return shape


def _finding_dict(report: AuditReport, finding: Finding) -> dict[str, Any]:
    shape = _plain(finding)
    if report.comparison is not None:
        status = report.comparison.status(finding)
        shape["status"] = status.status
        if status.gained or status.lost:
            shape.update(gained=list(status.gained), lost=list(status.lost))
    if finding.fingerprint in report.accepted:
        shape["accepted"] = {"reason": report.accepted[finding.fingerprint]}
    return shape


def _plain(finding: Finding) -> dict[str, Any]:
    return {**asdict(finding), "severity": finding.severity.value, "paths": list(finding.paths)}


def load_audit_baseline(path: Path, what: str = "baseline") -> Baseline:
    """Read and validate ``check --format json`` output before any work: every value the reader uses has its declared
    type, numbers are finite, names are short; anything else is one InputError that says what it is."""
    data = _read_document(Path(path), what)
    if not isinstance(data, dict) or data.get("format") != AUDIT_FORMAT:
        raise InputError(f"{what} {path} is not a `retrain-ci check --format json` audit")
    if data.get("version") != AUDIT_VERSION:
        raise InputError(
            f"{what} {path} is audit format version {printable(_shown(data.get('version')))}; this retrain-ci reads "
            f"{AUDIT_VERSION}"
        )
    try:
        return _baseline(Path(path), data)
    except ValueError as problem:
        raise InputError(f"{what} {path} is damaged ({printable(problem)})") from None


def _read_document(path: Path, what: str) -> Any:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise InputError(f"{what} {path} is not a `retrain-ci check --format json` audit (too large)")
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist") from None
    except OSError as error:
        raise InputError(f"cannot read {what} {path} ({error.strerror or error})") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError as error:
        raise InputError(f"{what} {path} is not JSON ({error})") from None
    except RecursionError:
        raise InputError(f"{what} {path} is not an audit (nested too deep)") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


@dataclass(frozen=True)
class _Summary:
    """The summary's numbers and its change line: what a baseline's reader shows or may one day compare."""

    images: int
    seconds: float
    classes: types.MappingProxyType
    findings: types.MappingProxyType
    accepted: int = 0
    caused: types.MappingProxyType | None = None
    fixed: int = 0
    change: str = ""


@dataclass(frozen=True)
class _FindingRow:
    """A finding as the audit JSON holds it; its details are for people and not read back."""

    check: str
    severity: str
    paths: tuple[str, ...]
    message: str
    fingerprint: str


def _baseline(path: Path, data: dict[str, Any]) -> Baseline:
    """The Baseline a checked document holds, or a ValueError that says where it is wrong."""
    summary = typed_value(_Summary, data.get("summary"), "summary")
    manifest: dict[str, ManifestEntry] = {}
    for row in _rows(data, "manifest"):
        entry = _plain_entry(row) or _manifest_entry(row)
        manifest[entry.path] = entry
    findings = []
    for row in _rows(data, "findings"):
        finding = _plain_finding(row) or _finding_row(row)
        findings.append(
            Finding(finding.check, Severity(finding.severity), finding.paths, finding.message, {}, finding.fingerprint)
        )
    return Baseline(path, manifest, findings, summary.change)


# A hundred thousand rows read through the typed walk take seconds; a row that is plainly valid (the fields' types
# and lengths checked here) is built directly, and any other goes through the walk, which accepts or names the error.
def _plain_entry(row: Any) -> ManifestEntry | None:
    if type(row) is not dict or "path_bytes" in row:
        return None
    path, label, split, key = row.get("path"), row.get("label"), row.get("split"), row.get("key")
    if not (_plain_name(path) and _plain_name(label) and _plain_name(split) and "key" in row):
        return None
    if key is not None and not _plain_name(key):
        return None
    return ManifestEntry(path, label, split, key)


def _plain_finding(row: Any) -> _FindingRow | None:
    if type(row) is not dict or "paths_bytes" in row:
        return None
    check, severity, paths, message, fingerprint = (
        row.get(name) for name in ("check", "severity", "paths", "message", "fingerprint")
    )
    if not (
        _plain_name(check)
        and type(severity) is str
        and type(paths) is list
        and all(_plain_name(name) for name in paths)
        and type(message) is str
        and _plain_name(fingerprint)
    ):
        return None
    return _FindingRow(check, severity, tuple(paths), message, fingerprint)


def _plain_name(value: Any) -> bool:
    return type(value) is str and len(value) <= MAX_NAME


def _manifest_entry(row: Any) -> ManifestEntry:
    entry = typed_value(ManifestEntry, row, "manifest")
    if "path_bytes" in row:  # a name that is not UTF-8, as the scan of the dataset lists it
        entry = replace(entry, path=_raw_name(row["path_bytes"], "manifest path_bytes"))
    _names(entry.path, entry.label, entry.split, entry.key or "")
    return entry


def _finding_row(row: Any) -> _FindingRow:
    finding = typed_value(_FindingRow, row, "findings")
    if "paths_bytes" in row:
        raw = typed_value(tuple[str, ...], row["paths_bytes"], "findings paths_bytes")
        finding = replace(finding, paths=tuple(_raw_name(name, "findings paths_bytes") for name in raw))
    _names(finding.check, finding.fingerprint, *finding.paths)
    return finding


def _raw_name(encoded: Any, where: str) -> str:
    """A name's bytes (base64, as ``render_json`` writes them) as Python names a file: undecodable bytes escaped."""
    try:
        return os.fsdecode(base64.b64decode(typed_value(str, encoded, where), validate=True))
    except binascii.Error:
        raise ValueError(f"{where}: not base64") from None


def _rows(data: dict[str, Any], name: str) -> list[Any]:
    rows = data.get(name)
    if not isinstance(rows, list):
        raise ValueError(f"{name}: {_shown(rows)} is not a list")
    return rows


def _names(*names: str) -> None:
    """Paths, classes, checks and keys are file-name sized: a longer one is not from an audit."""
    for name in names:
        if len(name) > MAX_NAME:
            raise ValueError(f"{_shown(name)} is too long for a name")


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
