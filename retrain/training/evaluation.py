"""Scoring an exported model on a labeled folder (``retrain-ci evaluate``): a golden set that training never sees."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrain.core.bottleneck_cache import content_key
from retrain.core.dataset import UNDECODABLE_REASON, class_folders, is_image_file, label_name
from retrain.core.display import is_undecodable
from retrain.core.errors import InputError
from retrain.core.gate import GateResult, judge
from retrain.core.hooks import Hooks
from retrain.core.model_diff import BaselineRun, ModelDiff, compare
from retrain.core.outputs import check_replaceable
from retrain.core.results import Evaluation
from retrain.core.settings import GateSettings
from retrain.reports import Report, write_report
from retrain.training.export import ExportedModel
from retrain.training.inference import classify


@dataclass
class ModelEvaluation:
    """An exported model scored on a labeled folder, the gate's outcome, and the report when one was asked for."""

    evaluation: Evaluation
    gate: GateResult
    report: Report | None
    diff: ModelDiff | None = None  # against the --baseline run

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON shape of ``retrain-ci evaluate --format json``."""
        evaluation = self.evaluation
        return {
            "accuracy": evaluation.accuracy,
            "images": len(evaluation.paths),
            "per_class": [
                {"label": row.Index, "images": int(row.images), "recall": float(row.recall)}
                for row in evaluation.per_class().itertuples()
            ],
            "misclassified": [
                {"path": str(m.path), "true": m.true_label, "predicted": m.predicted_label, "confidence": m.confidence}
                for m in evaluation.misclassified()
            ],
            "skipped": [str(path) for path, _ in evaluation.skipped],
            "gate": self.gate.to_dict(),
        } | ({"baseline": self.diff.to_dict()} if self.diff else {})


def evaluate_model(
    model: ExportedModel,
    image_dir: Path,
    *,
    gate: GateSettings,
    report_dir: Path | None = None,
    baseline: BaselineRun | None = None,
    hooks: Hooks = Hooks(),
) -> ModelEvaluation:
    """Classify every image of the folder, compare with the baseline run, judge the gate, and write a report when
    ``report_dir`` is given."""
    if report_dir:
        check_replaceable(report_dir, "report folder")
    evaluation = evaluate_folder(model, image_dir, hooks.progress("Classifying"))
    info = {"model": str(model.path), "dataset": str(image_dir), "skipped": len(evaluation.skipped)}
    diff = compare(baseline, evaluation, info, gate.min_class_support) if baseline else None
    result = judge(evaluation.accuracy, evaluation.recall_by_class(), gate, diff)
    report = None
    if report_dir:
        report = write_report(report_dir, evaluation, info | ({"baseline": diff.to_dict()} if diff else {}), result)
    return ModelEvaluation(evaluation, result, report, diff)


def evaluate_folder(
    model: ExportedModel, image_dir: Path, on_progress: Callable[[int, int], None] | None = None
) -> Evaluation:
    """Classify every image of a labeled folder (one subfolder per class, no split) with an exported model."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise InputError(f"image folder {image_dir} does not exist or is not a folder")
    paths, truths, undecodable = [], [], []
    for folder in class_folders(image_dir):
        label = label_name(folder.name)
        if label not in model.labels:
            raise InputError(f"class folder {folder.name!r} is not a label of the model ({', '.join(model.labels)})")
        files = sorted(p for p in folder.rglob("*") if is_image_file(p))
        undecodable += [(p, UNDECODABLE_REASON) for p in files if is_undecodable(str(p.relative_to(image_dir)))]
        files = [p for p in files if not is_undecodable(str(p.relative_to(image_dir)))]
        paths.extend(files)
        truths.extend([model.labels.index(label)] * len(files))
    if not paths:
        raise InputError(f"{image_dir} has no images in class subfolders")
    classified = classify(model, paths, on_progress)
    truth_of = dict(zip(paths, truths, strict=True))
    return Evaluation(
        model.labels,
        classified.paths,
        np.array([truth_of[path] for path in classified.paths], dtype=np.int64),
        classified.probabilities,
        [*undecodable, *classified.skipped],
        [content_key(path) for path in classified.paths],  # matches photos across runs (--baseline)
    )
