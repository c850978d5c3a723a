"""Cross-validated predictions: every image is judged by a model that never saw it.

Each image's fold comes from its content key, so a pull request that adds photos leaves every other photo in its fold:
the models each photo is judged by change only by the photos added to their training folds, and the suspects of
untouched photos stay put (issue 27: with shuffled stratified folds, 10 photos added to flowers-dev moved 14 untouched
photos in or out of the suspects; benchmarks/stability.py).

A photo's out-of-fold probabilities come from its fold's model, which never saw it, so they stay out of sample however
the other photos change: ``KeptFolds`` keeps them between audits, with each fold's model when it is linear. A
re-audit reuses them, predicts only the photos new since the fit (with their fold's kept linear model, or else with
one model fitted on the photos the fit judged, which never saw the new ones), and refits every fold when more than
``MAX_CHANGED`` of the rows changed since (issue 29).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.base import ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils import get_tags
from threadpoolctl import threadpool_limits

from retrain.core.shard_store import ShardStore

# Refit every fold when more than this share of the kept fit's rows are new, moved to another class or gone: below
# it, a kept probability differs from a refit's by about what a refit adding as many photos moves it, which on
# flowers-dev moved no likely suspect up to +100 photos (5.8%) and at most a few of every suspect
# (benchmarks/stability.py); the share bounds how far kept probabilities drift from a cold audit's.
MAX_CHANGED = 0.06
# Below this many rows every audit refits, so that it finds what a cold audit finds (kept probabilities drift from a
# refit's by a little, enough to move a photo at the cut: 2 of flowers-dev's untouched photos at +40): a refit of 5,000
# rows takes about 8 s on 2 busy cores (2.7 s for flowers-dev's 1,857), a fixed cost a larger dataset's would exceed.
# A refit starts from zeros, as a cold one does: started from the kept fit it took a third of the iterations but
# stopped elsewhere within the solver's tolerance, which moved one of flowers-dev's likely suspects across the cut.
REFIT_ROWS = 5_000
# Folds fitted at once: two cores, as CI's machines have (a fold's copy of the features each: 400 MB at 100,000).
FOLD_THREADS = 2
# Bump when what is kept changes meaning (the fit, the records), so that an older retrain-ci's are never reused.
KEPT_VERSION = 1
# Kept fits of settings (a check's model, a backbone, the classes) left in the folder, most recently used first: the
# two checks that keep theirs and a backbone or two besides.
KEPT_SETTINGS = 4


@dataclass(frozen=True)
class OutOfFold:
    """Out-of-fold probabilities for the rows whose class has enough images to be cross-validated."""

    rows: np.ndarray  # indices into the inputs
    classes: list[str]  # column order of ``probabilities``
    labels: np.ndarray  # given class of each row, as a column index
    probabilities: np.ndarray
    # Rows whose probabilities came from a fit in this run (fitted), from an earlier audit (reused), or from a kept
    # fold model that never saw them (predicted).
    counts: dict[str, int] = field(default_factory=dict)

    def given_probabilities(self) -> np.ndarray:
        """Each row's probability of its given class (confident learning's self-confidence)."""
        return self.probabilities[np.arange(len(self.labels)), self.labels]

    def typical_given_probabilities(self) -> np.ndarray:
        """Per class, the mean probability its own rows get: confident learning's per-class threshold."""
        given = self.given_probabilities()
        return np.array([given[self.labels == column].mean() for column in range(len(self.classes))])


def out_of_fold(
    model: ClassifierMixin,
    features: np.ndarray,
    labels: Sequence[str],
    folds: int,
    keys: Sequence[str],
    kept: KeptFolds | None = None,
    *,
    reuse_above: int | None = None,
) -> OutOfFold | None:
    """Cross-validate ``model`` with each row's fold taken from its content key (``keys``, hex digests); classes with
    fewer than two rows are left out. None when under two classes are left.

    With ``kept``, every fit is kept for the next audit, and above ``reuse_above`` rows (None: never; the mislabel
    check's ``REFIT_ROWS``) probabilities are taken from an earlier audit's fit when few rows changed since."""
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
        kept = None  # folds by position do not follow a photo: nothing to keep
    x = features if len(rows) == len(features) else features[rows]  # no copy of every bottleneck when all are judged
    row_keys = [str(keys[row]) for row in rows]
    # One BLAS thread: a fold's matrices are small, and BLAS threads waiting for a busy core made a fit 15x slower
    # (0.3 s against 5 s at load 5 on 2 cores); it also makes the fit the same whatever the machine's core count.
    with threadpool_limits(1):
        if kept is not None and reuse_above is not None and len(rows) > reuse_above:
            fit = kept.fit_for(model, classes, folds, x.shape[1])
            reused = fit.reuse(x, indices, row_keys, fold_of) if fit is not None else None
            if reused is not None:
                return OutOfFold(rows, classes, indices, *reused)
        probabilities, models = _cross_validated(model, x, indices, fold_of, folds, len(classes))
        if kept is not None and models is not None:
            kept.keep(model, classes, folds, models, x, indices, row_keys, probabilities)
    return OutOfFold(rows, classes, indices, probabilities, {"fitted": len(rows), "reused": 0, "predicted": 0})


def _cross_validated(
    model: ClassifierMixin, x: np.ndarray, labels: np.ndarray, fold_of: np.ndarray, folds: int, classes: int
) -> tuple[np.ndarray, list[ClassifierMixin] | None]:
    """Each row's probabilities from the model fitted on the other folds (as scikit-learn's ``cross_val_predict``
    with ``PredefinedSplit``), and the fold models; None for the models when a fold is empty or its model lacks a
    class: nothing a later audit could judge its new photos of that fold with.

    Folds are fitted ``FOLD_THREADS`` at a time, each on one BLAS thread: a fit is the same whichever thread makes it,
    and a second core, when free, takes a third off the check (flowers-dev: 0.9 -> 0.7 s for the logistic regression,
    1.1 -> 0.8 s for shortcut_bias's forest)."""

    def fitted(fold: int) -> ClassifierMixin | None:
        held = fold_of == fold
        return clone(model).fit(x[~held], labels[~held]) if held.any() else None

    with ThreadPoolExecutor(FOLD_THREADS) as pool:
        fold_models = list(pool.map(fitted, range(folds)))
    probabilities = np.zeros((len(x), classes))
    models: list[ClassifierMixin] | None = []
    for fold, fold_model in enumerate(fold_models):
        if fold_model is None:
            models = None
            continue
        held = fold_of == fold
        probabilities[np.ix_(held, fold_model.classes_)] = fold_model.predict_proba(x[held])
        if models is not None and len(fold_model.classes_) == classes:
            models.append(fold_model)
        else:
            models = None
    return probabilities, models


def _linear(model: ClassifierMixin) -> bool:
    """Whether ``model`` fitted is a logistic regression's coefficients alone (steps before it learn nothing), which
    ``KeptFolds`` keeps as its fold models."""
    steps = [step for _, step in model.steps] if hasattr(model, "steps") else [model]
    return isinstance(steps[-1], LogisticRegression) and not any(get_tags(step).requires_fit for step in steps[:-1])


def _probes(x: np.ndarray) -> np.ndarray:
    """A number per row that changes when its features do (another backbone, a damaged bottleneck): the kept
    probabilities of a photo whose features changed are not its own."""
    direction = np.random.default_rng(0).standard_normal(x.shape[1])
    # In blocks: a float64 copy of 100,000 bottlenecks at once would take 1 GB.
    return np.concatenate([x[start : start + 4096].astype(np.float64) @ direction for start in range(0, len(x), 4096)])


def _same_probes(kept: np.ndarray, now: np.ndarray) -> np.ndarray:
    return np.abs(kept - now) <= 1e-6 * (1 + np.abs(now))


def _photo_dtype(classes: int) -> np.dtype:
    # label: the class the fit learnt the photo as, -1 when predicted after the fit
    return np.dtype([("probabilities", "<f8", (classes,)), ("label", "<i4"), ("probe", "<f8")])


def _model_dtype(coefficients: int, features: int) -> np.dtype:
    return np.dtype([("coef", "<f8", (coefficients, features + 1)), ("rows", "<i8")])


# What a fit of another model keeps in ``models``: how many photos it judged, under the key ``fit``.
_FIT_DTYPE = np.dtype([("rows", "<i8")])


@dataclass
class KeptFit:
    """One kept fit: its folder, holding each photo's record (``photos``) and, for a linear model, each fold's
    (``models``)."""

    folder: Path
    model: ClassifierMixin
    classes: int
    coefficients: np.ndarray | None  # folds x coefficients x (features + intercept); None for another model
    fitted_rows: int
    warnings: list[str]

    def photos(self) -> ShardStore:
        return ShardStore(self.folder / "photos", dtype=_photo_dtype(self.classes), what="kept out-of-fold predictions")

    def reuse(
        self, x: np.ndarray, labels: np.ndarray, keys: list[str], fold_of: np.ndarray
    ) -> tuple[np.ndarray, dict[str, int]] | None:
        """Probabilities of every row from this fit (kept, or predicted by the row's kept fold model), and how many
        were reused and predicted; None when more than ``MAX_CHANGED`` of the rows changed since the fit."""
        unique, first = np.unique(keys, return_index=True)
        records = np.zeros((len(unique), 1), _photo_dtype(self.classes))
        store = self.photos()
        read = store.read(list(unique), records)
        self.warnings += [f"kept out-of-fold predictions: {shard.name} was damaged ({why}); recomputed" for shard,
                          why in read.damaged]  # fmt: skip
        records = records[:, 0]
        probes = _probes(x)
        position = np.searchsorted(unique, keys)
        valid = read.found[position] & _same_probes(records["probe"][position], probes)
        fitted_as = np.where(valid, records["label"][position], -1)
        still_fitted = int(np.count_nonzero((fitted_as >= 0)[first]))
        changed = int(np.count_nonzero(fitted_as != labels)) + max(0, self.fitted_rows - still_fitted)
        if changed > MAX_CHANGED * self.fitted_rows:
            return None
        probabilities = records["probabilities"][position]
        new = np.flatnonzero(~valid)
        if len(new) and self.coefficients is None:
            # One model of the photos the fit judged (never the new ones), rather than a fold model kept on disk.
            judged = np.flatnonzero(valid)
            judge = clone(self.model).fit(x[judged], labels[judged])
            probabilities[new] = 0.0
            probabilities[np.ix_(new, judge.classes_)] = judge.predict_proba(x[new])
        elif len(new):
            for fold in np.unique(fold_of[new]):
                rows = new[fold_of[new] == fold]
                probabilities[rows] = self._fold_model(int(fold)).predict_proba(x[rows])
        if len(new):
            added = np.zeros(len(new), _photo_dtype(self.classes))
            added["probabilities"], added["label"], added["probe"] = probabilities[new], -1, probes[new]
            new_keys, at = np.unique(np.asarray(keys)[new], return_index=True)
            store.add(list(new_keys), added[at].reshape(-1, 1))
            store.compact()
        return probabilities, {"fitted": 0, "reused": len(keys) - len(new), "predicted": len(new)}

    def _fold_model(self, fold: int) -> ClassifierMixin:
        """The kept model of ``fold``: ``model`` with the fit's coefficients, as scikit-learn would have fitted it."""
        fitted = clone(self.model)
        linear = fitted[-1] if hasattr(fitted, "steps") else fitted
        linear.coef_ = self.coefficients[fold, :, :-1].copy()
        linear.intercept_ = self.coefficients[fold, :, -1].copy()
        linear.classes_ = np.arange(self.classes)
        return fitted


class KeptFolds:
    """Out-of-fold probabilities and fold models kept between audits, beside the image-property cache, so that a
    re-audit (a pull request's) refits nothing while few photos changed.

    ``<root>/out-of-fold/v<KEPT_VERSION>/<settings>/<fit>/``: ``settings`` is a digest of what makes a fit valid
    (``salt``: the backbone; the classes, the folds, the model and its hyper-parameters, the features' width); each
    fit is a folder of two shard stores, ``photos`` (per content key: probabilities, the class it was fitted as, a
    probe of its features) and ``models`` (per fold for a linear model; for another, how many photos it judged),
    written in that order so that a fit with models is complete.
    A refit replaces the older fits; damaged shards are never trusted: their photos are predicted again, their
    models refitted.
    """

    def __init__(self, root: Path, salt: str) -> None:
        self.directory = Path(root) / "out-of-fold" / f"v{KEPT_VERSION}"
        self.salt = salt
        self.warnings: list[str] = []
        self.counts: dict[str, int] = {}

    def settings_folder(self, model: ClassifierMixin, classes: list[str], folds: int, features: int) -> Path:
        params = sorted((name, repr(value)) for name, value in model.get_params(deep=True).items()
                        if not hasattr(value, "get_params"))  # fmt: skip
        text = repr((self.salt, classes, folds, features, type(model).__name__, params))
        return self.directory / hashlib.sha1(text.encode()).hexdigest()[:16]

    def fit_for(self, model: ClassifierMixin, classes: list[str], folds: int, features: int) -> KeptFit | None:
        """The newest complete kept fit for these settings, None when there is none (or it is damaged)."""
        folder = self.settings_folder(model, classes, folds, features)
        linear = _linear(model)
        names = [f"fold {fold}" for fold in range(folds)] if linear else ["fit"]
        dtype = _model_dtype(1 if len(classes) == 2 else len(classes), features) if linear else _FIT_DTYPE
        for fit in sorted(folder.glob("fit-*"), reverse=True):
            records = np.zeros((len(names), 1), dtype)
            read = ShardStore(fit / "models", dtype=dtype, what="kept fold models").read(names, records)
            self.warnings += [f"kept fold models: {shard.name} was damaged ({why}); refitted"
                              for shard, why in read.damaged]  # fmt: skip
            if read.found.all():
                os.utime(folder)
                coefficients = records["coef"][:, 0] if linear else None
                return KeptFit(fit, model, len(classes), coefficients, int(records["rows"][0, 0]), self.warnings)
        return None

    def keep(
        self,
        model: ClassifierMixin,
        classes: list[str],
        folds: int,
        models: list[ClassifierMixin],
        x: np.ndarray,
        labels: np.ndarray,
        keys: list[str],
        probabilities: np.ndarray,
    ) -> None:
        """Keep a fresh fit (every row fitted), then drop the older fits and the least recently used settings."""
        folder = self.settings_folder(model, classes, folds, x.shape[1])
        fit = folder / f"fit-{time.time_ns():020d}-{os.getpid()}"
        unique, first = np.unique(keys, return_index=True)
        photos = np.zeros(len(unique), _photo_dtype(len(classes)))
        photos["probabilities"], photos["label"] = probabilities[first], labels[first]
        photos["probe"] = _probes(x)[first]
        ShardStore(fit / "photos", dtype=photos.dtype).add(list(unique), photos.reshape(-1, 1))
        if _linear(model):
            linear = [fitted[-1] if hasattr(fitted, "steps") else fitted for fitted in models]
            kept = np.zeros(len(models), _model_dtype(linear[0].coef_.shape[0], x.shape[1]))
            kept["coef"] = [np.hstack([m.coef_, m.intercept_[:, None]]) for m in linear]
            names = [f"fold {fold}" for fold in range(folds)]
        else:
            kept, names = np.zeros(1, _FIT_DTYPE), ["fit"]
        kept["rows"] = len(unique)
        ShardStore(fit / "models", dtype=kept.dtype).add(names, kept.reshape(-1, 1))
        for older in folder.glob("fit-*"):
            if older.name < fit.name:
                shutil.rmtree(older, ignore_errors=True)
        settings = sorted(self.directory.iterdir(), key=lambda path: path.stat().st_mtime, reverse=True)
        for unused in settings[KEPT_SETTINGS:]:
            shutil.rmtree(unused, ignore_errors=True)
