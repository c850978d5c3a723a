"""The default head: cosine learning-rate decay, training on mirrored bottlenecks, test-time mirror averaging."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from retrain.core.bottleneck_cache import BottleneckCache
from retrain.core.dataset import LabeledImage
from retrain.core.images import load_image, load_pixels
from retrain.core.results import SoftmaxHead
from retrain.core.settings import TrainingSettings
from retrain.training.bottlenecks import compute_bottlenecks
from retrain.training.classifier import Classifier
from retrain.training.head import learning_rate_at
from retrain.training.inference import classify, load_exported_model
from retrain.training.modules import load_image_module
from retrain.training.modules.runners import feature_runner
from tests.conftest import CliRun, run_cli, sample_photos


def test_cosine_schedule_decays_from_the_rate_to_zero_and_constant_is_the_tutorials() -> None:
    cosine = TrainingSettings(how_many_training_steps=100, learning_rate=0.1)
    rates = [learning_rate_at(cosine, step) for step in range(1, 101)]
    assert rates[0] == pytest.approx(0.1)
    assert rates[50] == pytest.approx(0.05, abs=1e-3)
    assert 0 < rates[-1] < 1e-4
    assert all(later < earlier for earlier, later in zip(rates, rates[1:], strict=False))
    constant = TrainingSettings(learning_rate=0.01, learning_rate_schedule="constant")
    assert {learning_rate_at(constant, step) for step in (1, 2000, 4000)} == {0.01}


def test_mirrored_bottlenecks_are_the_mirror_images_features_in_a_cache_of_their_own(
    flowers_sample: Path, tmp_path: Path
) -> None:
    photos = sample_photos(flowers_sample, "daisy", 3) + sample_photos(flowers_sample, "roses", 3)
    images = [LabeledImage(path, 0, "training") for path in photos]
    module = load_image_module("efficientnet_lite0")
    cache = BottleneckCache(tmp_path / "cache", module.cache_key + "-mirrored")
    mirrored = compute_bottlenecks(images, module, cache, mirrored=True)
    runner = feature_runner(module)
    expected = runner(np.stack([load_pixels(image.path, module.image_size)[:, ::-1] for image in images]))
    np.testing.assert_allclose(mirrored.vectors, expected, atol=1e-4)
    plain = compute_bottlenecks(images, module, BottleneckCache(tmp_path / "cache", module.cache_key))
    assert plain.computed == 6  # not served from the mirrored cache
    assert np.abs(plain.vectors - mirrored.vectors).max() > 0.1
    again = compute_bottlenecks(images, module, cache, mirrored=True)
    assert again.reused == 6 and again.computed == 0


def test_tta_classifier_gives_an_image_and_its_mirror_the_same_probabilities(flowers_sample: Path) -> None:
    module = load_image_module("efficientnet_lite0")
    rng = np.random.default_rng(0)
    head = SoftmaxHead(rng.normal(0, 0.05, (1280, 3)).astype(np.float32), np.zeros(3, np.float32))
    images = np.stack([load_image(path, (224, 224)) for path in sample_photos(flowers_sample, "tulips", 2)])
    mirrored = images[:, :, ::-1].copy()
    with_tta = Classifier(module, head, ("a", "b", "c"), "final_result", tta=True).__call__
    np.testing.assert_allclose(with_tta(tf.constant(images)), with_tta(tf.constant(mirrored)), atol=1e-5)
    without = Classifier(module, head, ("a", "b", "c"), "final_result", tta=False).__call__
    plain, flipped = without(tf.constant(images)).numpy(), without(tf.constant(mirrored)).numpy()
    assert np.abs(plain - flipped).max() > 1e-3
    np.testing.assert_allclose(with_tta(tf.constant(images)), (plain + flipped) / 2, atol=1e-5)
    features, mirrored_features = module(images).numpy(), module(mirrored).numpy()
    np.testing.assert_allclose(head.probabilities(features, mirrored_features), (plain + flipped) / 2, atol=1e-5)


def test_run_records_head_settings_and_exported_model_scores_as_reported(trained_run: CliRun) -> None:
    metrics = json.loads((trained_run.output_dir / "report" / "metrics.json").read_text())
    assert metrics["learning_rate"] == 0.1
    assert metrics["learning_rate_schedule"] == "cosine"
    assert metrics["tta"] is True and metrics["mirror_training"] is True
    predictions = pd.read_csv(trained_run.output_dir / "report" / "predictions.csv")
    exported = load_exported_model(trained_run.output_dir / "saved_model", None)
    classified = classify(exported, [Path(path) for path in predictions["path"]])
    reported = predictions[[f"p:{label}" for label in exported.labels]].to_numpy()
    np.testing.assert_allclose(classified.probabilities, reported, atol=1e-4)


def test_tutorial_head_is_one_flag_set_away(flowers_sample: Path, bottleneck_dir: Path, tmp_path: Path) -> None:
    run = run_cli(
        "train", flowers_sample, "--bottleneck-dir", bottleneck_dir, "--output-dir", tmp_path,
        "--how-many-training-steps", "200", "--eval-step-interval", "100", "--random-seed", "2",
        "--learning-rate", "0.01", "--learning-rate-schedule", "constant", "--no-tta", "--no-mirror-training",
    )  # fmt: skip
    assert run.exit_code == 0, run.stdout + run.stderr
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert (metrics["learning_rate"], metrics["learning_rate_schedule"]) == (0.01, "constant")
    assert metrics["tta"] is False and metrics["mirror_training"] is False
    assert not math.isnan(metrics["test_accuracy"])


def test_the_step_budget_follows_the_training_images_unless_steps_are_given() -> None:
    """About 50 passes over the training images in batches of 100, from 1,000 steps up to the tutorial's 4,000."""
    budget = TrainingSettings()
    assert [budget.steps_for(images) for images in (80, 1_486, 3_000, 8_000, 100_000)] == [1000, 1000, 1500, 4000, 4000]
    assert TrainingSettings(how_many_training_steps=250).steps_for(100_000) == 250
    assert TrainingSettings(train_batch_size=-1).steps_for(3_000) == 1000  # the whole set each step: 50 steps, floored
