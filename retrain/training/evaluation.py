"""Scoring an exported model on a labeled folder (``retrain-ci evaluate``): a golden set that training never sees."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrain.core.assessment import assess
from retrain.core.content_keys import content_keys
from retrain.core.dataset import SPECIAL_FILE_REASON, UNDECODABLE_REASON, scan_folder
from retrain.core.errors import InputError
from retrain.core.hooks import Hooks
from retrain.core.outputs import check_replaceable
from retrain.core.results import Evaluation
from retrain.core.run_json import BaselineRun
from retrain.core.run_report import RunFacts, RunReport
from retrain.core.settings import GateSettings
from retrain.reports import Report, write_report
from retrain.training.export import ExportedModel
from retrain.training.inference import classify


@dataclass(frozen=True)
class ModelEvaluation:
    """An exported model scored on a labeled folder: the predictions, the typed report, and its files when written."""

    evaluation: Evaluation
    run: RunReport
    report: Report | None


def evaluate_model(
    model: ExportedModel,
    image_dir: Path,
    *,
    gate: GateSettings,
    report_dir: Path | None = None,
    baseline: BaselineRun | None = None,
    hooks: Hooks = Hooks(),
) -> ModelEvaluation:
    """Classify every image of the folder, judge it (against the baseline run too), and write a report when
    ``report_dir`` is given."""
    if report_dir:
        check_replaceable(report_dir, "report folder")
    evaluation = evaluate_folder(model, image_dir, hooks.progress("Classifying"))
    facts = RunFacts(dataset=str(image_dir), model=str(model.path), skipped=len(evaluation.skipped))
    run = assess(evaluation, facts, gate, baseline)
    report = write_report(report_dir, evaluation, run) if report_dir else None
    return ModelEvaluation(evaluation, run, report)


def evaluate_folder(
    model: ExportedModel, image_dir: Path, on_progress: Callable[[int, int], None] | None = None
) -> Evaluation:
    """Classify every image of a labeled folder (one subfolder per class, no split) with an exported model."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise InputError(f"image folder {image_dir} does not exist or is not a folder")
    scan = scan_folder(image_dir)  # as training lists a dataset: its link policy, hidden and undecodable names
    paths, truths = [], []
    skipped = [(path, UNDECODABLE_REASON) for folder in scan.classes for path in folder.undecodable]
    skipped += [(path, SPECIAL_FILE_REASON) for folder in scan.classes for path in folder.special]
    skipped += [(path, f"a link not followed: {reason}") for path, reason in scan.skipped_links]
    for folder in scan.classes:
        if folder.label not in model.labels:
            raise InputError(
                f"class folder {folder.folder.name!r} is not a label of the model ({', '.join(model.labels)})"
            )
        paths.extend(folder.images)
        truths.extend([model.labels.index(folder.label)] * len(folder.images))
    if not paths:
        raise InputError(f"{image_dir} has no images in class subfolders")
    classified = classify(model, paths, on_progress)
    truth_of = dict(zip(paths, truths, strict=True))
    keys = content_keys(classified.paths)  # match photos across runs (--baseline)
    if errors := [key for key in keys if isinstance(key, OSError)]:
        raise errors[0]  # a photo classified a moment ago and gone now
    return Evaluation(
        model.labels,
        classified.paths,
        np.array([truth_of[path] for path in classified.paths], dtype=np.int64),
        classified.probabilities,
        [*skipped, *classified.skipped],
        [str(key) for key in keys],
    )
