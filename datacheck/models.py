"""Cross-validated predictions: every image is judged by a model that never saw it.

Each image's fold comes from its content key, so a pull request that adds photos leaves every other photo in its fold:
the models each photo is judged by change only by the photos added to their training folds, and the suspects of
untouched photos stay put (issue 27: with shuffled stratified folds, 10 photos added to flowers-dev moved 14 untouched
photos in or out of the suspects; benchmarks/stability.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.base import ClassifierMixin, clone
from sklearn.model_selection import PredefinedSplit, cross_val_predict


@dataclass(frozen=True)
class OutOfFold:
    """Out-of-fold probabilities for the rows whose class has enough images to be cross-validated."""

    rows: np.ndarray  # indices into the inputs
    classes: list[str]  # column order of ``probabilities``
    labels: np.ndarray  # given class of each row, as a column index
    probabilities: np.ndarray

    def given_probabilities(self) -> np.ndarray:
        """Each row's probability of its given class (confident learning's self-confidence)."""
        return self.probabilities[np.arange(len(self.labels)), self.labels]

    def typical_given_probabilities(self) -> np.ndarray:
        """Per class, the mean probability its own rows get: confident learning's per-class threshold."""
        given = self.given_probabilities()
        return np.array([given[self.labels == column].mean() for column in range(len(self.classes))])


def out_of_fold(
    model: ClassifierMixin, features: np.ndarray, labels: Sequence[str], folds: int, keys: Sequence[str]
) -> OutOfFold | None:
    """Cross-validate ``model`` with each row's fold taken from its content key (``keys``, hex digests); classes with
    fewer than two rows are left out. None when under two classes are left."""
    names, counts = np.unique(np.asarray(labels, dtype=object), return_counts=True)
    classes = [str(name) for name, count in zip(names, counts, strict=True) if count >= 2]
    if len(classes) < 2:
        return None
    label_array = np.asarray(labels, dtype=object)
    rows = np.flatnonzero(np.isin(label_array, classes))
    indices = np.array([classes.index(label) for label in label_array[rows]])
    folds = min(folds, int(np.bincount(indices).min()))
    fold_of = np.array([int(str(keys[row])[:8], 16) % folds for row in rows])
    if len(np.unique(fold_of)) < 2:  # a handful of photos can all hash into one fold: take turns instead
        fold_of = np.arange(len(rows)) % folds
    probabilities = cross_val_predict(
        clone(model), features[rows], indices, cv=PredefinedSplit(fold_of), method="predict_proba"
    )
    return OutOfFold(rows, classes, indices, probabilities)
