"""A re-audit takes each photo's out-of-fold probabilities from the fit an earlier audit kept, predicts only the photos
new since with their fold's kept model, and refits when the classes or settings changed, too much changed, or what was
kept is damaged (issue 29). On scikit-learn's handwritten digits: real features, no backbone, a second a fit."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer

from datacheck.models import MAX_CHANGED, KeptFolds, out_of_fold

FOLDS = 5


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, list[str], list[str]]:
    data = load_digits()
    keys = [hashlib.sha1(row.tobytes()).hexdigest() for row in data.data]
    return data.data.astype(np.float32), [str(target) for target in data.target], keys


def _judged(features: np.ndarray, labels: list[str], keys: list[str], cache: Path | None):
    model = make_pipeline(Normalizer(), LogisticRegression(C=10, max_iter=1000))
    kept = KeptFolds(cache, "digits") if cache is not None else None
    # Digits are under REFIT_ROWS, where the mislabel check refits on every audit: reuse, as a large dataset does.
    return out_of_fold(model, features, labels, FOLDS, keys, kept, reuse_above=0), kept


def _fits(cache: Path) -> list[Path]:
    return sorted(cache.glob("out-of-fold/v*/*/fit-*"))


def test_a_re_audit_of_the_same_photos_reuses_every_probability(digits, tmp_path: Path) -> None:
    features, labels, keys = digits
    cold, _ = _judged(features, labels, keys, tmp_path)
    warm, _ = _judged(features, labels, keys, tmp_path)
    assert cold.counts == {"fitted": len(keys), "reused": 0, "predicted": 0}
    assert warm.counts == {"fitted": 0, "reused": len(keys), "predicted": 0}
    np.testing.assert_array_equal(warm.probabilities, cold.probabilities)
    uncached, _ = _judged(features, labels, keys, None)
    np.testing.assert_allclose(uncached.probabilities, cold.probabilities, atol=1e-12)


def test_photos_added_since_the_fit_are_predicted_by_their_folds_kept_model(digits, tmp_path: Path) -> None:
    features, labels, keys = digits
    main = np.arange(len(keys)) >= 40
    rows = np.flatnonzero(main)
    before, _ = _judged(features[main], [labels[i] for i in rows], [keys[i] for i in rows], tmp_path)
    after, _ = _judged(features, labels, keys, tmp_path)
    assert after.counts == {"fitted": 0, "reused": len(keys) - 40, "predicted": 40}
    np.testing.assert_array_equal(after.probabilities[main], before.probabilities)
    # Out of sample: a cold cross-validation of every photo gives the added ones about the same probabilities.
    cold, _ = _judged(features, labels, keys, None)
    assert np.abs(after.probabilities[~main] - cold.probabilities[~main]).mean() < 0.01
    assert (after.probabilities[~main].argmax(axis=1) == cold.probabilities[~main].argmax(axis=1)).mean() >= 0.95
    assert len(_fits(tmp_path)) == 1
    again, _ = _judged(features, labels, keys, tmp_path)  # the predicted ones were kept too
    assert again.counts == {"fitted": 0, "reused": len(keys), "predicted": 0}


def test_more_than_the_share_changed_refits(digits, tmp_path: Path) -> None:
    features, labels, keys = digits
    _judged(features, labels, keys, tmp_path)
    few = int(MAX_CHANGED * len(keys)) - 1
    moved = [("0" if label != "0" else "1") if i < few else label for i, label in enumerate(labels)]
    warm, _ = _judged(features, moved, keys, tmp_path)
    assert warm.counts["reused"] == len(keys)  # a moved photo's probabilities stay out of sample: its own fold's
    many = [("0" if label != "0" else "1") if i < few + 20 else label for i, label in enumerate(labels)]
    refit, _ = _judged(features, many, keys, tmp_path)
    assert refit.counts["fitted"] == len(keys)
    assert len(_fits(tmp_path)) == 1  # the older fit is dropped


def test_a_class_added_refits(digits, tmp_path: Path) -> None:
    features, labels, keys = digits
    _judged(features, labels, keys, tmp_path)
    renamed = ["ten" if label == "9" and i % 2 else label for i, label in enumerate(labels)]
    warm, _ = _judged(features, renamed, keys, tmp_path)
    assert warm.classes == sorted({*labels, "ten"})
    assert warm.counts["fitted"] == len(keys)


def test_damaged_kept_entries_are_never_trusted_but_recomputed(digits, tmp_path: Path) -> None:
    features, labels, keys = digits
    main = np.arange(len(keys)) >= 20
    rows = np.flatnonzero(main)
    _judged(features[main], [labels[i] for i in rows], [keys[i] for i in rows], tmp_path)
    added, _ = _judged(features, labels, keys, tmp_path)  # the 20 added photos' predictions: a shard of their own
    (fit,) = _fits(tmp_path)
    newest = sorted((fit / "photos").glob("*.shard"))[-1]
    newest.write_bytes(newest.read_bytes()[:-1] + b"\0")
    warm, kept = _judged(features, labels, keys, tmp_path)
    assert warm.counts == {"fitted": 0, "reused": len(keys) - 20, "predicted": 20}
    assert any("kept out-of-fold predictions" in warning and "damaged" in warning for warning in kept.warnings)
    np.testing.assert_allclose(warm.probabilities, added.probabilities, atol=1e-12)  # by the models that never saw them
    for shard in (fit / "photos").glob("*.shard"):  # every kept probability lost: which photos were fitted is unknown
        shard.write_bytes(shard.read_bytes()[:-1] + b"\0")
    refit, _ = _judged(features, labels, keys, tmp_path)
    assert refit.counts["fitted"] == len(keys)
    (fit,) = _fits(tmp_path)
    for shard in (fit / "models").glob("*.shard"):
        shard.write_bytes(shard.read_bytes()[:100] + b"x" + shard.read_bytes()[101:])
    refit, kept = _judged(features, labels, keys, tmp_path)
    assert refit.counts["fitted"] == len(keys)
    assert any("kept fold models" in warning for warning in kept.warnings)


def test_features_of_another_backbone_are_not_judged_by_the_kept_fit(digits, tmp_path: Path) -> None:
    features, labels, keys = digits
    _judged(features, labels, keys, tmp_path)
    other = features[:, ::-1].copy()  # same photos, other features: the kept probabilities are not theirs
    warm, _ = _judged(other, labels, keys, tmp_path)
    assert warm.counts["fitted"] == len(keys)


def test_two_classes_are_kept_and_reused_alike(digits, tmp_path: Path) -> None:
    features, labels, keys = digits
    rows = [i for i, label in enumerate(labels) if label in ("3", "8")]
    pair = (features[rows], [labels[i] for i in rows], [keys[i] for i in rows])
    cold, _ = _judged(*pair, tmp_path)
    warm, _ = _judged(*pair[:2], [key if i >= 10 else "f" * 40 for i, key in enumerate(pair[2])], tmp_path)
    assert warm.counts == {"fitted": 0, "reused": len(rows) - 10, "predicted": 10}
    assert warm.probabilities.shape == (len(rows), 2)
    # The 10 under new keys are predicted by fold 0's model (ffffffff % 5); the others keep their probabilities.
    assert (warm.probabilities[10:] == cold.probabilities[10:]).all()


def test_a_fold_no_photo_hashes_into_is_judged_as_before_and_nothing_is_kept(digits, tmp_path: Path) -> None:
    features, labels, keys = digits
    rows = [i for i, key in enumerate(keys) if int(key[:8], 16) % FOLDS != 4][:300]
    part = (features[rows], [labels[i] for i in rows], [keys[i] for i in rows])
    judged, _ = _judged(*part, tmp_path)
    assert judged.counts["fitted"] == len(rows)
    assert _fits(tmp_path) == []


def test_a_forest_keeps_its_probabilities_and_judges_added_photos_by_a_forest_of_the_others(
    digits, tmp_path: Path
) -> None:
    features, labels, keys = digits
    forest = RandomForestClassifier(n_estimators=20, random_state=0)
    main = np.arange(len(keys)) >= 40
    rows = np.flatnonzero(main)
    kept = KeptFolds(tmp_path, "forest")
    before = out_of_fold(forest, features[main], [labels[i] for i in rows], FOLDS, [keys[i] for i in rows], kept,
                         reuse_above=0)  # fmt: skip
    after = out_of_fold(forest, features, labels, FOLDS, keys, kept, reuse_above=0)
    assert after.counts == {"fitted": 0, "reused": len(keys) - 40, "predicted": 40}
    np.testing.assert_array_equal(after.probabilities[main], before.probabilities)
    (fit,) = _fits(tmp_path)
    assert sum(shard.stat().st_size for shard in (fit / "models").glob("*.shard")) < 1_000  # a count, no forest
    cold = out_of_fold(forest, features, labels, FOLDS, keys)
    agree = after.probabilities[~main].argmax(axis=1) == cold.probabilities[~main].argmax(axis=1)
    assert agree.mean() >= 0.9
    refit = out_of_fold(forest, features, labels, FOLDS, keys, kept)  # reuse_above None: never reused
    assert refit.counts["fitted"] == len(keys)
