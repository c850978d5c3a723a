"""Run the audit: scan the folder, decode every image once, fetch bottlenecks if a check needs them, run the checks."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from datacheck.config import AuditConfig
from datacheck.findings import AuditReport
from datacheck.properties import image_properties
from datacheck.registry import AuditData, selected_checks
from retrain.bottlenecks import BottleneckCache, compute_bottlenecks
from retrain.dataset import LabeledImage, scan_folder

# (what is being done, done, total): the CLI draws progress bars from it.
StageProgress = Callable[[str, int, int], None]


def audit_dataset(root: Path, config: AuditConfig, on_progress: StageProgress | None = None) -> AuditReport:
    """Audit an image folder; raises RetrainError only for input it cannot audit at all (a missing folder)."""
    started = time.perf_counter()
    checks = selected_checks(config.only, config.skip)
    data = audit_data(root, config, any(check.needs_bottlenecks for check in checks), on_progress)
    findings = [finding for check in checks for finding in check().run(data)]
    findings.sort(key=lambda finding: -finding.severity.rank)  # stable: check order within a severity
    return AuditReport(
        dataset=str(root),
        findings=findings,
        images=len(data.images),
        classes={folder.label: len(folder.images) for folder in data.scan.classes},
        checks_run=[check.id for check in checks],
        seconds=time.perf_counter() - started,
        bottlenecks=data.bottleneck_counts,
    )


def audit_data(
    root: Path, config: AuditConfig, with_bottlenecks: bool, on_progress: StageProgress | None = None
) -> AuditData:
    """Scan the folder and decode every image once; bottlenecks too when a check needs them."""
    scan = scan_folder(root)
    images = image_properties(
        scan, config.testing_percentage, config.validation_percentage, _stage(on_progress, "Reading images")
    )
    data = AuditData(scan, images, config)
    if with_bottlenecks:
        data.bottlenecks, data.bottleneck_counts = bottlenecks_for(
            root, images, config, _stage(on_progress, "Computing bottlenecks")
        )
    return data


def bottlenecks_for(
    root: Path, images: pd.DataFrame, config: AuditConfig, on_progress: Callable[[int, int], None] | None = None
) -> tuple[np.ndarray, dict[str, int]]:
    """Bottlenecks of the readable images through training's module and cache, one row per row of ``images``."""
    from retrain.modules import load_image_module  # imports TensorFlow: only when a check needs bottlenecks

    module = load_image_module(config.tfhub_module)
    cache = BottleneckCache(config.bottleneck_dir, module.cache_key)
    readable = images[images["error"].isna()]
    labels = sorted(images["label"].unique())
    wanted = [
        LabeledImage(root / path, labels.index(label), split)
        for path, label, split in zip(readable["path"], readable["label"], readable["split"], strict=True)
    ]
    result = compute_bottlenecks(wanted, module, cache, on_progress)
    row_of = {root / path: row for row, path in enumerate(images["path"])}
    matrix = np.full((len(images), module.feature_size), np.nan, dtype=np.float32)
    for image, vector in zip(result.images, result.vectors, strict=True):
        matrix[row_of[image.path]] = vector
    return matrix, {"computed": result.computed, "reused": result.reused}


def _stage(on_progress: StageProgress | None, stage: str) -> Callable[[int, int], None] | None:
    if on_progress is None:
        return None
    return lambda done, total: on_progress(stage, done, total)
