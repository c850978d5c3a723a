"""Scoring predictions against true labels: accuracy, per-class recall and the misclassified images."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support

from retrain.dataset import class_folders, is_image_file, label_name
from retrain.errors import RetrainError
from retrain.inference import ExportedModel, classify


@dataclass(frozen=True)
class Misclassified:
    path: Path
    true_label: str
    predicted_label: str
    confidence: float


@dataclass
class Evaluation:
    """Predictions for labeled images, row-aligned: ``paths``, ``truths`` (label indices), ``probabilities``."""

    labels: tuple[str, ...]
    paths: list[Path]
    truths: np.ndarray
    probabilities: np.ndarray
    skipped: list[tuple[Path, str]]

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.predictions == self.truths)) if len(self.truths) else 0.0

    def per_class(self, every_label: bool = False) -> pd.DataFrame:
        """Precision, recall, F1 and images per class, indexed by label: the classes with images, or every label."""
        indices = list(range(len(self.labels))) if every_label else sorted(set(self.truths.tolist()))
        precision, recall, f1, support = precision_recall_fscore_support(
            self.truths, self.predictions, labels=indices, zero_division=0
        )
        return pd.DataFrame(
            {"precision": precision, "recall": recall, "f1": f1, "images": support.astype(int)},
            index=pd.Index([self.labels[i] for i in indices], name="label"),
        )

    def recall_by_class(self) -> dict[str, float]:
        """Recall of each class with images: what the per-class gate checks."""
        return {str(label): float(recall) for label, recall in self.per_class()["recall"].items()}

    def misclassified(self) -> list[Misclassified]:
        """Wrong predictions, most confident first: those are the ones worth a look (or a relabel)."""
        wrong = [
            Misclassified(path, self.labels[truth], self.labels[p.argmax()], float(p.max()))
            for path, truth, p in zip(self.paths, self.truths, self.probabilities, strict=True)
            if truth != p.argmax()
        ]
        return sorted(wrong, key=lambda m: -m.confidence)


def evaluate_folder(
    model: ExportedModel, image_dir: Path, on_progress: Callable[[int, int], None] | None = None
) -> Evaluation:
    """Classify every image of a labeled folder (one subfolder per class, no split) with an exported model."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise RetrainError(f"image folder {image_dir} does not exist or is not a folder")
    paths, truths = [], []
    for folder in class_folders(image_dir):
        label = label_name(folder.name)
        if label not in model.labels:
            raise RetrainError(f"class folder {folder.name!r} is not a label of the model ({', '.join(model.labels)})")
        files = sorted(p for p in folder.rglob("*") if is_image_file(p))
        paths.extend(files)
        truths.extend([model.labels.index(label)] * len(files))
    if not paths:
        raise RetrainError(f"{image_dir} has no images in class subfolders")
    classified = classify(model, paths, on_progress)
    truth_of = dict(zip(paths, truths, strict=True))
    return Evaluation(
        model.labels,
        classified.paths,
        np.array([truth_of[path] for path in classified.paths], dtype=np.int64),
        classified.probabilities,
        classified.skipped,
    )
