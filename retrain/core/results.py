"""Result values: what training and evaluation hand back, plain data that reports and the shell render."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas and scikit-learn load when a table of scores is asked for, not with every result value
    import pandas as pd


@dataclass
class SoftmaxHead:
    """The new layer: logits = bottleneck @ weights + biases."""

    weights: np.ndarray
    biases: np.ndarray

    def logits(self, bottlenecks: np.ndarray) -> np.ndarray:
        return np.asarray(bottlenecks, np.float32) @ self.weights + self.biases

    def probabilities(self, bottlenecks: np.ndarray, mirrored: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities; with the mirrored images' bottlenecks, the mean over both views (``--tta``)."""
        from scipy.special import softmax

        probabilities = softmax(self.logits(bottlenecks), axis=1)
        if mirrored is None:
            return probabilities
        return (probabilities + softmax(self.logits(mirrored), axis=1)) / 2


@dataclass(frozen=True)
class TrainingStep:
    """One evaluation of the new layer as the run's report keeps it: a point of its training curves."""

    step: int
    train_accuracy: float
    train_cross_entropy: float
    validation_accuracy: float
    validation_cross_entropy: float


@dataclass(frozen=True)
class EvalStep:
    """One of the new layer's evaluations during training (the tutorial's step lines), with the layer as it was."""

    step: int
    steps: int  # the run's, so that a line can say "step 400/1000"
    train_accuracy: float
    cross_entropy: float
    validation_accuracy: float
    validation_cross_entropy: float
    validation_count: int
    layer: SoftmaxHead = field(repr=False, compare=False)

    @property
    def scores(self) -> TrainingStep:
        """The step's scores without the layer: what the report's curves keep of it."""
        return TrainingStep(
            self.step, self.train_accuracy, self.cross_entropy, self.validation_accuracy, self.validation_cross_entropy
        )


@dataclass(frozen=True)
class EpochResult:
    """One epoch of ``--fine-tune``; epoch 0 is the new layer alone, before fine-tuning."""

    epoch: int
    train_accuracy: float | None  # None for epoch 0, which trains nothing
    train_cross_entropy: float | None
    validation_accuracy: float
    validation_cross_entropy: float
    seconds: float


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
    content_keys: list[str] = field(default_factory=list)  # row-aligned when known: the cache's SHA-1 of each file

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.predictions == self.truths)) if len(self.truths) else 0.0

    def per_class(self, every_label: bool = False) -> pd.DataFrame:
        """Precision, recall, F1 and images per class, indexed by label: the classes with images, or every label."""
        import pandas as pd
        from sklearn.metrics import precision_recall_fscore_support

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
