"""The rest of the tutorial: frozen graph for label_image.py, TFLite, TensorBoard, `label` and `evaluate`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from retrain.core.images import load_image
from tests.conftest import CliRun, copy_dataset, run_cli, sample_photos, tensorboard_events

CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]


def _label_image(graph_file: Path, image: Path, size: int = 224) -> np.ndarray:
    """What TensorFlow's label_image.py does: TF1 session, decode_jpeg + resize_bilinear / 255, ops by name."""
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph_file.read_bytes())
    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(graph_def)
        pixels = tf.cast(tf.io.decode_jpeg(tf.io.read_file(str(image)), channels=3), tf.float32)
        resized = tf.compat.v1.image.resize_bilinear(pixels[None], [size, size]) / 255.0
        with tf.compat.v1.Session(graph=graph) as session:
            tensor = session.run(resized)
            placeholder = graph.get_operation_by_name("import/Placeholder")
            output = graph.get_operation_by_name("import/final_result")
            assert placeholder.type == "Placeholder"
            assert placeholder.outputs[0].shape.as_list() == [None, size, size, 3]
            return np.squeeze(session.run(output.outputs[0], {placeholder.outputs[0]: tensor}))


def test_frozen_graph_works_with_label_image(trained_run: CliRun, flowers_sample: Path) -> None:
    graph = trained_run.output_dir / "output_graph.pb"
    for label in CLASSES:
        photo = sample_photos(flowers_sample, label, 1)[0]
        scores = _label_image(graph, photo)
        assert scores.shape == (5,) and abs(float(scores.sum()) - 1) < 1e-4
    daisy = sorted((flowers_sample / "daisy").glob("*.jpg"))[0]
    assert CLASSES[int(np.argmax(_label_image(graph, daisy)))] == "daisy"


def test_intermediate_graphs_are_stored(trained_run: CliRun, flowers_sample: Path) -> None:
    (intermediate,) = (trained_run.output_dir / "intermediate_graph").glob("*.pb")
    assert intermediate.name == "intermediate_500.pb"
    assert _label_image(intermediate, sample_photos(flowers_sample, "roses", 1)[0]).shape == (5,)


def test_tflite_model_is_reported_next_to_the_float_model(trained_run: CliRun) -> None:
    float_accuracy = float(re.search(r"Final test accuracy = ([\d.]+)%", trained_run.stdout)[1])
    tflite = re.search(r"TensorFlow Lite test accuracy = ([\d.]+)% \(none, ([\d.]+) MB\)", trained_run.stdout)
    assert abs(float(tflite[1]) - float_accuracy) <= 100 / 18  # same model: at most one test image differs
    size = (trained_run.output_dir / "model.tflite").stat().st_size
    assert abs(size / 1e6 - float(tflite[2])) < 0.1


def test_int8_tflite_is_smaller_and_close(
    trained_run: CliRun, flowers_sample: Path, bottleneck_dir: Path, tmp_path: Path
) -> None:
    run = run_cli(
        "train", flowers_sample, "--bottleneck-dir", bottleneck_dir, "--output-dir", tmp_path,
        "--how-many-training-steps", "500", "--random-seed", "7",
        "--tflite", tmp_path / "int8.tflite", "--quantize", "int8",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    float_accuracy = float(re.search(r"Final test accuracy = ([\d.]+)%", run.stdout)[1])
    int8_accuracy = float(re.search(r"TensorFlow Lite test accuracy = ([\d.]+)% \(int8", run.stdout)[1])
    assert int8_accuracy >= float_accuracy - 100 * 2 / 18
    assert (tmp_path / "int8.tflite").stat().st_size < 0.4 * (trained_run.output_dir / "model.tflite").stat().st_size


def test_tensorboard_summaries_are_written(trained_run: CliRun) -> None:
    logs = trained_run.output_dir / "retrain_logs"
    train, validation = tensorboard_events(logs / "train"), tensorboard_events(logs / "validation")
    steps = list(range(100, 1001, 100))  # --eval-step-interval 100 over the 1,000 steps of the budget
    for events in (train, validation):
        assert sorted(step for step, _ in events["accuracy"]) == steps
        assert sorted(step for step, _ in events["cross_entropy"]) == steps
        accuracy = [float(tf.make_ndarray(value.tensor)) for _, value in events["accuracy"]]
        assert all(0 <= a <= 1 for a in accuracy)
    # the new layer's histograms at the first evaluation, then every 5% of the run (400 of them took 6 s, issue 29):
    # every 50 steps, so at each of these evaluations
    for tag in ("final_layer/weights", "final_layer/biases"):
        assert sorted(step for step, _ in train[tag]) == steps
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(train["__graph__"][0][1])
    assert {"Placeholder", "final_result"} <= {node.name for node in graph.node}


def test_label_classifies_files_and_folders_with_every_model_format(trained_run: CliRun, flowers_sample: Path) -> None:
    daisy = sorted((flowers_sample / "daisy").glob("*.jpg"))[0]
    roses = flowers_sample / "roses"
    for model in ("saved_model", "output_graph.pb", "model.tflite"):
        run = run_cli("label", "--model", trained_run.output_dir / model, daisy, roses, "--format", "json")
        assert run.exit_code == 0, run.stderr
        results = json.loads(run.stdout)
        assert len(results) == 41
        assert results[0]["path"] == str(daisy) and results[0]["predictions"][0]["label"] == "daisy"
        assert [len(r["predictions"]) for r in results] == [5] * 41
        roses_top = [r["predictions"][0]["label"] for r in results[1:]]
        assert roses_top.count("roses") >= 30


def test_label_table_and_graph_flags(trained_run: CliRun, flowers_sample: Path) -> None:
    daisy = sorted((flowers_sample / "daisy").glob("*.jpg"))[0]
    run = run_cli(
        "label", "--graph", trained_run.output_dir / "output_graph.pb",
        "--labels", trained_run.output_dir / "output_labels.txt",
        "--input-layer", "Placeholder", "--output-layer", "final_result",
        "--input-height", "224", "--input-width", "224", "--top-k", "2", daisy,
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert re.search(r"daisy\s+0\.\d{3}", run.stdout)
    assert "#2" in run.stdout and "#3" not in run.stdout


def test_label_applies_exif_orientation(tmp_path: Path, flowers_sample: Path) -> None:
    photo = sample_photos(flowers_sample, "tulips", 1)[0]
    with Image.open(photo) as image:
        upright = image.convert("RGB")
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90 CW to display": stored pixels are the upright photo turned 90 degrees CCW
        upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    size = (64, 96)
    restored = load_image(tmp_path / "rotated.jpg", size)
    expected = np.asarray(upright.resize((96, 64), Image.Resampling.BILINEAR), np.float32) / 255
    assert np.abs(restored - expected).mean() < 0.05


def test_label_skips_unreadable_images_and_fails_with_none(trained_run: CliRun, tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_text("not a photo")
    run = run_cli("label", "--model", trained_run.output_dir / "saved_model", tmp_path / "broken.jpg")
    assert run.exit_code == 2
    assert "warning: skipped unreadable image" in run.stderr and "error: no readable image" in run.stderr


def test_evaluate_scores_a_golden_folder_and_gates(trained_run: CliRun, flowers_sample: Path, tmp_path: Path) -> None:
    golden = copy_dataset(tmp_path / "golden", {c: sample_photos(flowers_sample, c, 8) for c in ("roses", "tulips")})
    model = trained_run.output_dir / "saved_model"
    run = run_cli("evaluate", model, golden, "--format", "json")
    assert run.exit_code == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["images"] == 16
    assert [row["label"] for row in report["per_class"]] == ["roses", "tulips"]
    correct = sum(round(row["recall"] * row["images"]) for row in report["per_class"])
    assert report["accuracy"] == pytest.approx(correct / 16)
    assert len(report["misclassified"]) == 16 - correct
    passing = run_cli("evaluate", model, golden, "--min-accuracy", f"{report['accuracy']:.4f}")
    assert passing.exit_code == 0
    assert "Accuracy = " in passing.stdout
    failing = run_cli("evaluate", model, golden, "--min-accuracy", f"{report['accuracy'] + 0.001:.4f}")
    assert failing.exit_code == 1
    assert "FAILED: accuracy" in failing.stderr


def test_evaluate_rejects_a_class_the_model_does_not_know(trained_run: CliRun, tmp_path: Path) -> None:
    (tmp_path / "golden" / "orchids").mkdir(parents=True)
    run = run_cli("evaluate", trained_run.output_dir / "saved_model", tmp_path / "golden")
    assert run.exit_code == 2
    assert "'orchids' is not a label of the model" in run.stderr


def test_distortions_recompute_training_bottlenecks(flowers_sample: Path, bottleneck_dir: Path, tmp_path: Path) -> None:
    photos = copy_dataset(tmp_path / "photos", {c: sample_photos(flowers_sample, c, 12) for c in ("daisy", "roses")})
    run = run_cli(
        "train", photos, "--bottleneck-dir", bottleneck_dir, "--output-dir", tmp_path / "out",
        "--flip-left-right", "--random-crop", "10", "--random-scale", "10", "--random-brightness", "10",
        "--how-many-training-steps", "4", "--train-batch-size", "8", "--eval-step-interval", "2", "--random-seed", "0",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert "Distortions on" in run.stdout
    assert "Training" in run.stderr  # a progress bar, since each step now runs the module
    assert re.search(r"Step 4/4: train accuracy", run.stdout)


def test_distortions_transform_images_as_asked() -> None:
    from retrain.core.settings import Distortions
    from retrain.training.distortions import distort

    generator = tf.random.Generator.from_seed(1)
    images = tf.random.stateless_uniform([16, 40, 40, 3], seed=[1, 2])
    flipped = distort(Distortions(flip_left_right=True), images, (40, 40), generator).numpy()
    for original, result in zip(images.numpy(), flipped, strict=True):
        assert np.allclose(result, original, atol=1e-5) or np.allclose(result, original[:, ::-1], atol=1e-5)
    assert not np.allclose(flipped, images.numpy(), atol=1e-5)  # some of 16 were mirrored
    cropped = distort(Distortions(random_crop=20, random_scale=20), images, (32, 32), generator).numpy()
    assert cropped.shape == (16, 32, 32, 3)
    bright = distort(Distortions(random_brightness=50), tf.fill([200, 2, 2, 3], 0.5), (2, 2), generator).numpy()
    assert 0.25 <= bright.min() < 0.35 and 0.65 < bright.max() <= 0.75


def test_classification_module_trains_on_imagenet_scores(flowers_sample: Path, tmp_path: Path) -> None:
    photos = copy_dataset(tmp_path / "photos", {c: sample_photos(flowers_sample, c, 15) for c in ("daisy", "roses")})
    run = run_cli(
        "train", photos, "--tfhub-module", "efficientnet_lite0/classification",
        "--bottleneck-dir", tmp_path / "bottlenecks", "--output-dir", tmp_path / "out",
        "--how-many-training-steps", "100", "--random-seed", "0",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    model = tf.saved_model.load(str(tmp_path / "out" / "saved_model"))
    assert model.final_weights.shape == (1000, 2)


def test_a_gate_run_that_exports_no_model_never_loads_tensorflow_and_scores_the_same(
    trained_run: CliRun, flowers_sample: Path, bottleneck_dir: Path, tmp_path: Path
) -> None:
    """``--export none``, bottlenecks cached (the shared run filled them): the run trains, scores and reports with
    numpy and LiteRT alone, so a pull request's gate does not pay TensorFlow's import (issue 29), and its predictions
    are the exporting run's, photo by photo."""
    output = tmp_path / "gate"
    code = (
        "import sys; from typer.testing import CliRunner; from retrain.cli import app; "
        f"r = CliRunner().invoke(app, ['train', {str(flowers_sample)!r}, '--bottleneck-dir', {str(bottleneck_dir)!r}, "
        f"'--output-dir', {str(output)!r}, '--random-seed', '7', '--export', 'none']); "
        "print(r.exit_code, 'tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split()[-2:] == ["0", "False"], result.stdout + result.stderr
    assert sorted(path.name for path in output.iterdir()) == ["output_labels.txt", "report", "retrain_logs"]
    predictions = (output / "report" / "predictions.csv").read_text()
    assert predictions == (trained_run.output_dir / "report" / "predictions.csv").read_text()
    assert "accuracy" in tensorboard_events(output / "retrain_logs" / "validation")


def test_export_writes_the_formats_asked_for_only(flowers_sample: Path, bottleneck_dir: Path, tmp_path: Path) -> None:
    run = run_cli(
        "train", flowers_sample, "--bottleneck-dir", bottleneck_dir, "--output-dir", tmp_path,
        "--how-many-training-steps", "50", "--export", "saved_model",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert (tmp_path / "saved_model" / "saved_model.pb").is_file() and not (tmp_path / "output_graph.pb").exists()
    assert "Saved model" in run.stdout and "Frozen graph" not in run.stdout


def test_export_names_an_unknown_format_in_one_line(flowers_sample: Path, tmp_path: Path) -> None:
    run = run_cli("train", flowers_sample, "--output-dir", tmp_path, "--export", "saved_model,onnx")
    assert run.exit_code == 2
    assert run.stderr.strip() == "error: --export takes saved_model, frozen_graph or none (comma-separated), not 'onnx'"
    assert not any(tmp_path.iterdir())
