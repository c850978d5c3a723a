"""The audit JSON (``check --format json``, audit.json): written and read back here only, so its shape has one home.

A later audit reads it as its baseline: ``format`` and ``version`` say what it is; anything else is refused with an
InputError that says what it is.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from datacheck.baseline import Baseline, ManifestEntry
from datacheck.findings import AuditReport, Finding, Severity
from retrain.core.display import is_undecodable, name_bytes, printable
from retrain.core.errors import InputError

AUDIT_FORMAT = "retrain-ci-audit"
AUDIT_VERSION = 1


def render_json(report: AuditReport) -> str:
    """Valid UTF-8: a byte of a name that is not UTF-8 is written as ``printable`` shows it (``\\xff``), and each such
    path's bytes as base64 beside it (``paths_bytes`` of a finding, ``path_bytes`` of a manifest entry)."""
    document = audit_document(report)
    for row in (*document["findings"], *document.get("fixed", ())):
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
    shape["manifest"] = [vars(entry) for entry in report.manifest.values()]
    return shape


def _finding_dict(report: AuditReport, finding: Finding) -> dict[str, Any]:
    shape = _plain(finding)
    if report.comparison is not None:
        status = report.comparison.status(finding)
        shape["status"] = status.status
        if status.status == "changed":
            shape.update(gained=list(status.gained), lost=list(status.lost))
    if finding.fingerprint in report.accepted:
        shape["accepted"] = {"reason": report.accepted[finding.fingerprint]}
    return shape


def _plain(finding: Finding) -> dict[str, Any]:
    return {**asdict(finding), "severity": finding.severity.value, "paths": list(finding.paths)}


def load_audit_baseline(path: Path, what: str = "baseline") -> Baseline:
    """Read and validate ``check --format json`` output; anything else is an InputError that says what it is."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8", errors="surrogateescape"))
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist") from None
    except OSError as error:
        raise InputError(f"cannot read {what} {path} ({error.strerror or error})") from None
    except ValueError as error:
        raise InputError(f"{what} {path} is not JSON ({error})") from None
    if not isinstance(data, dict) or data.get("format") != AUDIT_FORMAT:
        raise InputError(f"{what} {path} is not a `retrain-ci check --format json` audit")
    if data.get("version") != AUDIT_VERSION:
        raise InputError(
            f"{what} {path} is audit format version {data.get('version')!r}; this retrain-ci reads {AUDIT_VERSION}"
        )
    try:
        manifest = {
            row["path"]: ManifestEntry(row["path"], row["label"], row["split"], row["key"]) for row in data["manifest"]
        }
        findings = [
            Finding(
                row["check"], Severity(row["severity"]), tuple(row["paths"]), row["message"], {}, row["fingerprint"]
            )
            for row in data["findings"]
        ]
        change = str(data["summary"].get("change", ""))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise InputError(f"{what} {path} is damaged: an entry lacks or mangles {error}") from None
    return Baseline(Path(path), manifest, findings, change)
