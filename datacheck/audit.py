"""Run the audit: scan the folder, decode every image once, fetch bottlenecks if a check wants them, run the checks,
judge the gate."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from datacheck.baseline import Baseline, ManifestEntry, audit_diff, finding_fingerprint, members
from datacheck.findings import AuditReport, Finding
from datacheck.properties import image_properties, property_cache
from datacheck.registry import AuditData, Need, selected_checks, wants_bottlenecks
from datacheck.settings import AuditSettings
from retrain.core.bottleneck_cache import BottleneckSource
from retrain.core.dataset import FolderScan, LabeledImage, scan_folder
from retrain.core.errors import InputError
from retrain.core.hooks import Hooks
from retrain.core.per_image import ItemMap, thread_map


def audit_dataset(
    root: Path,
    settings: AuditSettings,
    *,
    hooks: Hooks = Hooks(),
    bottlenecks: BottleneckSource | None = None,
    baseline: Baseline | None = None,
    per_image: ItemMap = thread_map,
) -> AuditReport:
    """Audit an image folder; raises InputError only for input it cannot audit at all (a missing folder).

    ``bottlenecks`` (the training engine's ``bottleneck_source``) is called when the selected checks want them
    (``wants_bottlenecks``); with a ``baseline`` (an earlier audit) the report also says what changed since, and
    its gate is judged from the settings' ``fail_on``, ``fail_on_new`` and accepted findings. ``per_image`` runs the
    decoding pass (``--executor ray``: on the cluster); the dataset-wide checks run here, on the gathered table.
    """
    started = time.perf_counter()
    checks = selected_checks(settings.only, settings.skip)
    needed = bottlenecks if wants_bottlenecks(settings) else None
    data = audit_data(root, settings, hooks=hooks, bottlenecks=needed, per_image=per_image)
    stage_seconds = {"dataset": time.perf_counter() - started}
    manifest = {
        row.path: ManifestEntry(row.path, row.label, row.split, row.sha1)
        for row in data.images[["path", "label", "split", "sha1"]].itertuples()
    }
    findings = []
    for check in checks:
        check_started = time.perf_counter()
        findings += [_fingerprinted(finding, manifest) for finding in check().run(data)]
        stage_seconds[check.id] = time.perf_counter() - check_started
    findings.sort(key=lambda finding: -finding.severity.rank)  # stable: check order within a severity
    return AuditReport(
        dataset=str(root),
        findings=findings,
        images=len(data.images),
        classes={folder.label: len(folder.images) for folder in data.scan.classes},
        checks_run=[check.id for check in checks],
        seconds=time.perf_counter() - started,
        bottlenecks=data.bottleneck_counts,
        properties=data.property_counts,
        pairs=data.pair_counts,
        neighbours=data.neighbour_counts,
        out_of_fold=data.fold_counts,
        warnings=data.warnings + data.bottleneck_warnings + _without_bottlenecks(checks, settings),
        manifest=manifest,
        comparison=audit_diff(baseline, findings, manifest) if baseline is not None else None,
        accepted={accepted.fingerprint: accepted.reason for accepted in settings.accepted},
        fail_on=settings.fail_on,
        fail_on_new=settings.fail_on_new,
        stage_seconds=stage_seconds,
    )


def _without_bottlenecks(checks: list[type], settings: AuditSettings) -> list[str]:
    """One line when checks that find more with bottlenecks run without them (--no-bottlenecks), so that a smaller
    list of findings is never mistaken for a cleaner dataset."""
    weaker = [check.id for check in checks if Need.BETTER_WITH_BOTTLENECKS in check.needs]
    if settings.use_bottlenecks or not weaker:
        return []
    return [
        f"{', '.join(weaker)} compared perceptual hashes only (--no-bottlenecks): cropped, mirrored or rotated "
        "copies go unfound"
    ]


def _fingerprinted(finding: Finding, manifest: dict[str, ManifestEntry]) -> Finding:
    return dataclasses.replace(
        finding, fingerprint=finding_fingerprint(finding.check, members(finding.check, finding.paths, manifest))
    )


def audit_data(
    root: Path,
    settings: AuditSettings,
    *,
    hooks: Hooks = Hooks(),
    bottlenecks: BottleneckSource | None = None,
    per_image: ItemMap = thread_map,
) -> AuditData:
    """Scan the folder and decode every image the property cache lacks; bottlenecks too when a source is given."""
    scan = scan_folder(root)
    properties = image_properties(
        scan, settings.split, hooks.progress("Reading images"), cache=property_cache(settings), per_image=per_image
    )
    images = properties.table
    data = AuditData(scan, images, settings)
    data.property_counts = {"computed": properties.computed, "reused": properties.reused}
    data.warnings = properties.warnings
    if bottlenecks is not None:
        data.bottlenecks, data.bottleneck_counts, data.bottleneck_warnings = _bottleneck_matrix(
            scan, images, bottlenecks, hooks
        )
    return data


def _bottleneck_matrix(
    scan: FolderScan, images: pd.DataFrame, bottlenecks: BottleneckSource, hooks: Hooks
) -> tuple[np.ndarray, dict[str, int], list[str]]:
    """Bottlenecks of the readable images, one row per row of ``images`` (NaN where it has none), and warnings."""
    paths = [path for folder in scan.classes for path in folder.images]  # the table's rows, in order
    readable = np.flatnonzero(images["error"].isna().to_numpy()).tolist()
    label_index = {label: index for index, label in enumerate(sorted(images["label"].unique()))}
    labels, splits = images["label"].tolist(), images["split"].tolist()
    wanted = [LabeledImage(paths[row], label_index[labels[row]], splits[row]) for row in readable]
    result = bottlenecks(wanted, hooks)
    if not len(result.vectors) and wanted:
        raise InputError("no bottleneck could be computed for any readable image")
    row_of = {id(image): row for image, row in zip(wanted, readable, strict=True)}  # the source returns ours, or skips
    rows = [row_of[id(image)] for image in result.images]
    if rows == list(range(len(images))):  # every image, in order: the vectors as they are (no copy of 500 MB)
        matrix = result.vectors.astype(np.float32, copy=False)
    else:
        matrix = np.full((len(images), result.vectors.shape[1] if len(result.vectors) else 0), np.nan, np.float32)
        if rows:
            matrix[rows] = result.vectors
    return matrix, {"computed": result.computed, "reused": result.reused}, result.warnings
