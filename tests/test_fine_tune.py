"""``--fine-tune``: the top blocks of the bundled backbone train with the new layer, and every export carries them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from retrain.core.dataset import LabeledImage
from retrain.core.images import load_image
from retrain.core.results import SoftmaxHead
from retrain.core.settings import Distortions, FineTuneSettings
from retrain.training.classifier import Classifier
from retrain.training.export import ModelToExport, write_labels
from retrain.training.exporters import EXPORTERS
from retrain.training.fine_tune import fine_tune
from retrain.training.inference import classify, load_exported_model
from retrain.training.modules import ImageModule, load_image_module
from retrain.training.modules.bundled import BUNDLED_BACKBONES
from retrain.training.modules.efficientnet_lite import build_network
from tests.conftest import CliRun, copy_dataset, run_cli, sample_photos, tensorboard_events


def _fine_tune(flowers_sample: Path, bottleneck_dir: Path, output_dir: Path) -> CliRun:
    run = run_cli(
        "train", flowers_sample,
        "--bottleneck-dir", bottleneck_dir,
        "--output-dir", output_dir,
        "--random-seed", "5",
        "--tfhub-module", "efficientnet_lite0",  # named, so Lite1 (the --fine-tune default) is not used
        "--how-many-training-steps", "500",
        "--eval-step-interval", "500",
        "--fine-tune", "--fine-tune-epochs", "2", "--fine-tune-blocks", "2", "--fine-tune-learning-rate", "0.003",
        "--tflite", output_dir / "model.tflite",
    )  # fmt: skip
    assert run.exit_code == 0, run.stdout + run.stderr
    return run


@pytest.fixture(scope="module")
def fine_tuned_run(flowers_sample: Path, bottleneck_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    return _fine_tune(flowers_sample, bottleneck_dir, tmp_path_factory.mktemp("fine-tuned"))


def _reported_probabilities(run: CliRun) -> tuple[list[Path], np.ndarray]:
    predictions = pd.read_csv(run.output_dir / "report" / "predictions.csv")
    columns = [column for column in predictions.columns if column.startswith("p:")]
    return [Path(path) for path in predictions["path"]], predictions[columns].to_numpy()


def test_each_epoch_is_reported_with_a_progress_bar(fine_tuned_run: CliRun) -> None:
    assert re.search(r"Before fine-tuning: validation accuracy [\d.]+%", fine_tuned_run.stdout)
    epochs = re.findall(r"Fine-tuning epoch (\d)/2: train accuracy [\d.]+% \(augmented\)", fine_tuned_run.stdout)
    assert epochs == ["1", "2"]
    assert "Fine-tuning" in fine_tuned_run.stderr and "0:00:00" in fine_tuned_run.stderr  # bar with time left


def test_best_epoch_is_kept_and_recorded(fine_tuned_run: CliRun) -> None:
    metrics = json.loads((fine_tuned_run.output_dir / "report" / "metrics.json").read_text())
    fine_tune = metrics["fine_tune"]
    assert (fine_tune["blocks"], fine_tune["epochs"], fine_tune["learning_rate"]) == (2, 2, 0.003)
    assert fine_tune["layer_learning_rate_factor"] == FineTuneSettings().layer_learning_rate_factor
    assert [epoch["epoch"] for epoch in fine_tune["epochs_run"]] == [0, 1, 2]
    accuracies = [epoch["validation_accuracy"] for epoch in fine_tune["epochs_run"]]
    assert fine_tune["best_epoch"] == max(range(len(accuracies)), key=lambda epoch: (accuracies[epoch], epoch))
    best = fine_tune["epochs_run"][fine_tune["best_epoch"]]
    assert metrics["validation_accuracy"] == pytest.approx(best["validation_accuracy"])  # the kept weights


@pytest.mark.parametrize("export", ["saved_model", "output_graph.pb", "model.tflite"])
def test_every_export_scores_the_test_images_as_reported(fine_tuned_run: CliRun, export: str) -> None:
    paths, reported = _reported_probabilities(fine_tuned_run)
    model = load_exported_model(fine_tuned_run.output_dir / export, fine_tuned_run.output_dir / "output_labels.txt")
    np.testing.assert_allclose(classify(model, paths).probabilities, reported, atol=2e-4)


def test_same_seed_fine_tunes_to_the_same_digits(
    fine_tuned_run: CliRun, flowers_sample: Path, bottleneck_dir: Path, tmp_path: Path
) -> None:
    again = _fine_tune(flowers_sample, bottleneck_dir, tmp_path)

    def epoch_lines(run: CliRun) -> list[str]:
        return [re.sub(r", \d+ s$", "", line) for line in run.stdout.splitlines() if "fine-tuning" in line.lower()]

    assert epoch_lines(again) == epoch_lines(fine_tuned_run)
    np.testing.assert_array_equal(_reported_probabilities(again)[1], _reported_probabilities(fine_tuned_run)[1])


def test_exports_carry_trained_backbone_weights(flowers_sample: Path, tmp_path: Path) -> None:
    """A backbone whose top blocks changed in Python exports as changed, in every format."""
    network = build_network(BUNDLED_BACKBONES["efficientnet_lite0"], 224)
    for variable in network.top_variables(len(network.blocks) - 2):
        variable.assign(variable * 1.2)
    original = load_image_module("efficientnet_lite0")
    tuned = ImageModule("efficientnet_lite0", (224, 224), 1280, "tuned-for-test", network)
    rng = np.random.default_rng(1)
    head = SoftmaxHead(rng.normal(0, 0.05, (1280, 3)).astype(np.float32), np.zeros(3, np.float32))
    photos = sample_photos(flowers_sample, "sunflowers", 4)
    images = np.stack([load_image(path, (224, 224)) for path in photos])
    expected = tf.nn.softmax(head.logits(tuned(images).numpy())).numpy()
    assert np.abs(expected - tf.nn.softmax(head.logits(original(images).numpy())).numpy()).max() > 1e-2

    classifier = Classifier(tuned, head, ("a", "b", "c"), "final_result")
    write_labels(("a", "b", "c"), tmp_path / "output_labels.txt")
    for exporter, export in zip(EXPORTERS.values(), ("saved_model", "output_graph.pb", "model.tflite"), strict=True):
        exporter.write(ModelToExport(classifier), tmp_path / export)
    for export in ("saved_model", "output_graph.pb", "model.tflite"):
        model = load_exported_model(tmp_path / export, tmp_path / "output_labels.txt")
        np.testing.assert_allclose(classify(model, photos).probabilities, expected, atol=2e-4, err_msg=export)


def test_an_explicit_module_is_the_one_fine_tuned(fine_tuned_run: CliRun) -> None:
    metrics = json.loads((fine_tuned_run.output_dir / "report" / "metrics.json").read_text())
    assert metrics["module"] == "efficientnet_lite0"
    assert metrics["image_size"] == [280, 280]  # 1.25x Lite0's 224
    assert "Fine-tuning the top 2 blocks of efficientnet_lite0" in fine_tuned_run.stdout


def test_fine_tune_without_a_module_trains_lite1(flowers_sample: Path, bottleneck_dir: Path, tmp_path: Path) -> None:
    """No --tfhub-module: --fine-tune uses Lite1 at its fine-tuning size, and metrics.json says so (tiny settings)."""
    photos = copy_dataset(tmp_path / "photos", {c: sample_photos(flowers_sample, c, 12) for c in ("daisy", "roses")})
    run = run_cli(
        "train", photos, "--bottleneck-dir", bottleneck_dir, "--output-dir", tmp_path / "out", "--random-seed", "1",
        "--how-many-training-steps", "20", "--validation-percentage", "25", "--testing-percentage", "25",
        "--fine-tune", "--fine-tune-epochs", "1", "--fine-tune-blocks", "1",
    )  # fmt: skip
    assert run.exit_code == 0, run.stdout + run.stderr
    metrics = json.loads((tmp_path / "out" / "report" / "metrics.json").read_text())
    assert metrics["module"] == "efficientnet_lite1"
    assert metrics["image_size"] == [304, 304] and metrics["fine_tune"]["image_size"] == 304
    assert "Fine-tuning the top 1 blocks of efficientnet_lite1" in run.stdout
    layer_only = run_cli("train", photos, "--bottleneck-dir", bottleneck_dir, "--output-dir", tmp_path / "layer",
                         "--random-seed", "1", "--how-many-training-steps", "20",
                         "--validation-percentage", "25", "--testing-percentage", "25")  # fmt: skip
    assert layer_only.exit_code == 0, layer_only.stderr
    assert json.loads((tmp_path / "layer" / "report" / "metrics.json").read_text())["module"] == "efficientnet_lite0"


@pytest.mark.parametrize("module", ["efficientnet_lite0/classification", "/nonexistent/saved_model"])
def test_fine_tune_refuses_modules_it_cannot_train(module: str, flowers_sample: Path, tmp_path: Path) -> None:
    run = run_cli("train", flowers_sample, "--output-dir", tmp_path, "--tfhub-module", module, "--fine-tune")
    assert run.exit_code == 2
    assert run.stderr.strip().startswith("error: --fine-tune trains the bundled backbones only")
    assert len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "saved_model").exists()


def test_tensorboard_shows_fine_tuning_epochs(fine_tuned_run: CliRun) -> None:
    logs = fine_tuned_run.output_dir / "retrain_logs"
    train, validation = tensorboard_events(logs / "train"), tensorboard_events(logs / "validation")
    assert sorted(step for step, _ in train["fine_tune/accuracy"]) == [1, 2]
    assert sorted(step for step, _ in validation["fine_tune/accuracy"]) == [0, 1, 2]
    metrics = json.loads((fine_tuned_run.output_dir / "report" / "metrics.json").read_text())
    logged = {step: float(tf.make_ndarray(value.tensor)) for step, value in validation["fine_tune/accuracy"]}
    assert logged == pytest.approx({e["epoch"]: e["validation_accuracy"] for e in metrics["fine_tune"]["epochs_run"]})


@pytest.mark.parametrize("factor", [0.0, 10.0])
def test_the_new_layer_learns_at_its_own_rate(factor: float, flowers_sample: Path) -> None:
    """One step on 32 photos: the blocks always move; the layer moves only when its rate factor is not zero."""
    labels = ("daisy", "dandelion", "roses", "sunflowers")
    images = [
        LabeledImage(path, index, "training")
        for index, label in enumerate(labels)
        for path in sample_photos(flowers_sample, label, 8)
    ]
    rng = np.random.default_rng(0)
    # Everything is called "tulips" (class 4, no photos here) before fine-tuning: validation accuracy starts at 0,
    # so the epoch after the step is always the one kept.
    head = SoftmaxHead(rng.normal(0, 0.05, (1280, 5)).astype(np.float32), np.array([0, 0, 0, 0, 20], np.float32))
    network = build_network(BUNDLED_BACKBONES["efficientnet_lite0"], 224)
    top_block = [variable.numpy() for variable in network.top_variables(len(network.blocks) - 1)]
    config = FineTuneSettings(
        blocks=1, epochs=1, image_size=224, layer_learning_rate_factor=factor, augmentation=Distortions()
    )

    module = load_image_module("efficientnet_lite0")
    tuned = fine_tune(module, network, head, training=images, validation=images, settings=config, seed=0, tta=False)

    assert tuned.best_epoch == 1
    moved = [variable.numpy() for variable in network.top_variables(len(network.blocks) - 1)]
    assert any(not np.array_equal(before, after) for before, after in zip(top_block, moved, strict=True))
    layer_moved = not np.array_equal(tuned.head.weights, head.weights)
    assert layer_moved == (factor > 0)
