"""A user runs ``retrain-ci train`` on real flower photos and gets a working classifier."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import tensorflow as tf

from retrain.core.images import load_image
from tests.conftest import CliRun, run_cli

CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]


def _final_accuracy(stdout: str) -> float:
    return float(re.search(r"Final test accuracy = ([\d.]+)% \(N=(\d+)\)", stdout)[1]) / 100


def test_training_reaches_useful_test_accuracy(trained_run: CliRun) -> None:
    assert _final_accuracy(trained_run.stdout) >= 0.75


def test_step_lines_show_train_and_validation_accuracy_and_cross_entropy(trained_run: CliRun) -> None:
    steps = re.findall(
        r"Step (\d+)/1000: train accuracy [\d.]+%, cross-entropy ([\d.]+), validation accuracy [\d.]+% \(N=100\)",
        trained_run.stdout,
    )
    # 160 training photos: the step budget's floor, 1,000 (not the tutorial's flat 4,000); evaluated every 100 steps
    assert [int(step) for step, _ in steps] == list(range(100, 1001, 100))
    assert float(steps[-1][1]) < float(steps[0][1])  # cross-entropy falls as the layer learns


def test_verbose_shows_every_evaluation(flowers_sample: Path, bottleneck_dir: Path, tmp_path: Path) -> None:
    run = run_cli(
        "train", flowers_sample, "--bottleneck-dir", bottleneck_dir, "--output-dir", tmp_path,
        "--how-many-training-steps", "120", "--eval-step-interval", "5", "--random-seed", "1", "--verbose",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert [int(step) for step in re.findall(r"^Step (\d+)/120: ", run.stdout, re.MULTILINE)] == list(range(5, 121, 5))


def test_bottlenecks_are_computed_with_progress_then_reported(trained_run: CliRun) -> None:
    assert "Computing bottlenecks" in trained_run.stderr
    assert "200 images in 5 classes" in trained_run.stdout


def test_labels_file_lists_classes_in_index_order(trained_run: CliRun) -> None:
    labels = (trained_run.output_dir / "output_labels.txt").read_text().splitlines()
    assert labels == CLASSES


def test_saved_model_classifies_images_with_labels_as_asset(trained_run: CliRun, flowers_sample: Path) -> None:
    model = tf.saved_model.load(str(trained_run.output_dir / "saved_model"))
    photos = [sorted((flowers_sample / label).glob("*.jpg"))[0] for label in CLASSES]
    images = np.stack([load_image(photo, (224, 224)) for photo in photos])
    probabilities = model.signatures["serving_default"](images=tf.constant(images))["probabilities"].numpy()
    assert probabilities.shape == (5, 5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (probabilities.argmax(axis=1) == np.arange(5)).sum() >= 4  # training photos, so nearly all right
    labels = Path(model.labels_file.asset_path.numpy().decode()).read_text().splitlines()
    assert labels == CLASSES


def test_misclassified_test_images_are_listed(trained_run: CliRun) -> None:
    listed = trained_run.stdout.split("=== MISCLASSIFIED TEST IMAGES ===")[1].split("Final test accuracy")[0]
    rows = [line for line in listed.splitlines() if line.strip()]
    accuracy = _final_accuracy(trained_run.stdout)
    count = int(re.search(r"\(N=(\d+)\)\n", trained_run.stdout.split("Final test accuracy")[1])[1])
    assert len(rows) == round((1 - accuracy) * count)
    for row in rows:
        path, true_label = row.split("  ")[0], row.split("  ")[1].split(" -> ")[0]
        assert Path(path).parent.name == true_label


def test_second_run_uses_cache_and_tutorial_flag_spelling(
    trained_run: CliRun, flowers_sample: Path, bottleneck_dir: Path, tmp_path: Path
) -> None:
    run = run_cli(
        "train",
        "--image_dir", flowers_sample,
        "--bottleneck_dir", bottleneck_dir,
        "--how_many_training_steps", "50",
        "--eval_step_interval", "25",
        "--learning_rate", "0.02",
        "--train_batch_size", "50",
        "--validation_batch_size", "-1",
        "--testing_percentage", "10",
        "--validation_percentage", "10",
        "--output_labels", tmp_path / "labels.txt",
        "--saved_model_dir", tmp_path / "model",
        "--random_seed", "1",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert "0 computed, 200 from cache" in run.stdout
    assert re.search(r"Step 50/50: .* \(N=\d\d\)", run.stdout)  # -1: the whole validation split, not 100 draws
    assert (tmp_path / "labels.txt").read_text().splitlines() == CLASSES
    assert (tmp_path / "model" / "saved_model.pb").is_file()


def test_same_seed_gives_the_same_run(flowers_sample: Path, bottleneck_dir: Path, tmp_path: Path) -> None:
    def run(seed: str) -> list[str]:
        result = run_cli(
            "train", flowers_sample, "--bottleneck-dir", bottleneck_dir, "--output-dir", tmp_path / seed,
            "--how-many-training-steps", "300", "--eval-step-interval", "50", "--random-seed", seed,
        )  # fmt: skip
        return [line for line in result.stdout.splitlines() if line.startswith(("Step", "Final"))]

    first = run("3")
    assert first == run("3")
    assert first != run("4")
