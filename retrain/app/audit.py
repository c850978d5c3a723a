"""The audit job (``retrain-ci check``, the pytest plugin): settings, outputs, baseline, executor and bottlenecks
decided once, then ``datacheck.audit.audit_dataset``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datacheck.findings import AuditReport
from datacheck.settings import AuditSettings
from retrain.core.bottleneck_cache import Bottlenecks, BottleneckSource
from retrain.core.dataset import LabeledImage
from retrain.core.errors import InputError
from retrain.core.hooks import Hooks
from retrain.core.outputs import check_replaceable, check_writable
from retrain.core.settings import GateSettings
from retrain.core.settings_file import (
    SettingsSource,
    check_recordable,
    find_settings,
    record_accepted,
    resolve_settings,
)

if TYPE_CHECKING:  # the report's modules draw figures: loaded only when an audit is linked to a run
    from retrain.reports import AuditLinks


def audit_links(audit: Path) -> AuditLinks:
    """What a run's report takes from an audit JSON of its dataset: the audit's change line against its own baseline
    ("" for an audit without one: no change to speak of), and the checks that name each photo, by content key (so a
    relabelled test photo is linked to, say, suspected_mislabel)."""
    from datacheck.audit_json import load_audit_baseline
    from retrain.reports import AuditLinks

    read = load_audit_baseline(audit, "audit")
    checks: dict[str, list[str]] = {}
    for finding in read.findings:
        for path in finding.paths:
            entry = read.manifest.get(path)
            if entry is not None and entry.key is not None and finding.check not in checks.get(entry.key, []):
                checks.setdefault(entry.key, []).append(finding.check)
    return AuditLinks(read.change, {key: tuple(found) for key, found in checks.items()})


def settings_file(image_dir: Path | None, given: Path | None, working_dir: Path) -> SettingsSource:
    """The settings file a job reads (the one given, else the working directory's; never one inside the dataset),
    and those it ignored, for the shell to say."""
    return find_settings(Path(image_dir) if image_dir is not None else None, working_dir, given)


def accept_target(source: SettingsSource, reason: str) -> Path:
    """The settings file ``--accept`` writes, refused before the audit when it cannot be written or would be ignored."""
    target = source.path or source.default_target
    if target is None:
        raise InputError(
            "cannot record accepted findings: the working directory is inside the dataset, whose settings files are "
            "ignored; run from the repository's root or give --config"
        )
    check_recordable(target, reason)
    return target


def audit_settings(path: Path | None, options: Mapping[str, Any]) -> AuditSettings:
    """The audit's settings (file < environment < options) and their one cross-check."""
    settings = resolve_settings(AuditSettings, path, options, shared_with=(GateSettings,))
    if settings.fail_on_new and settings.baseline is None:
        raise InputError("--fail-on-new needs --baseline: an earlier `retrain-ci check --format json`")
    return settings


def check_audit_outputs(settings: AuditSettings, output: Path | None, report_dir: Path | None) -> None:
    """Before any image is decoded: the report file and folder, the property cache and, when the checks use
    bottlenecks, their cache are writable."""
    from datacheck.properties import property_cache
    from datacheck.registry import wants_bottlenecks

    if output is not None:
        if not output.parent.is_dir():
            raise InputError(f"cannot write the report to {output}: folder {output.parent} does not exist")
        check_writable(output, "report", folder=False)
    if report_dir is not None:
        check_replaceable(report_dir, "audit folder")
    if wants_bottlenecks(settings):
        check_writable(settings.module.bottleneck_dir, "bottleneck cache", folder=True)
    check_writable(property_cache(settings).directory, "property cache", folder=True)  # under it by default


def audit_job(root: Path, settings: AuditSettings, hooks: Hooks = Hooks()) -> AuditReport:
    """Audit ``root``: against ``settings.baseline`` when given, on the chosen executor, with bottlenecks (and
    TensorFlow) only when a selected check asks the engine for them."""
    from datacheck.audit import audit_dataset
    from datacheck.audit_json import load_audit_baseline
    from retrain.training.executors import executor_for

    baseline = load_audit_baseline(settings.baseline) if settings.baseline is not None else None
    executor = executor_for(settings.execution)
    executor.connect()  # before any image is decoded: one error line if its workers are not there
    return audit_dataset(
        root,
        settings,
        hooks=hooks,
        bottlenecks=_bottlenecks_on_demand(settings),
        baseline=baseline,
        per_image=executor.per_image_map(),
    )


def _bottlenecks_on_demand(settings: AuditSettings) -> BottleneckSource:
    """The training engine's bottleneck source, imported only if the audit calls it."""

    def bottlenecks(images: Sequence[LabeledImage], hooks: Hooks) -> Bottlenecks:
        from retrain.training.bottlenecks import bottleneck_source

        return bottleneck_source(settings.module, settings.execution)(images, hooks)

    return bottlenecks


def accept_findings(report: AuditReport, fingerprints: Sequence[str], reason: str, path: Path) -> list[str]:
    """Record reviewed findings as accepted in the settings file; only this audit's fingerprints, since a typo would
    otherwise accept nothing, silently. Returns the fingerprints added."""
    found = {finding.fingerprint for finding in report.findings}
    unknown = [fingerprint for fingerprint in fingerprints if fingerprint not in found]
    if unknown:
        raise InputError(f"no finding of this audit has fingerprint {unknown[0]!r}; `--format json` lists them")
    return record_accepted(path, fingerprints, reason)
