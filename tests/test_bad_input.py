"""Bad input gets one clear line and exit code 2 (or a warning when the run can go on), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import copy_dataset, run_cli, sample_photos


def _train(image_dir: Path, bottleneck_dir: Path, tmp_path: Path, *extra: str | Path):
    return run_cli(
        "train", image_dir, "--bottleneck-dir", bottleneck_dir, "--output-dir", tmp_path / "out",
        "--how-many-training-steps", "20", "--random-seed", "0", *extra,
    )  # fmt: skip


def _assert_one_line_error(run, *fragments: str) -> None:
    assert run.exit_code == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in run.stdout + run.stderr


def _unboxed(text: str) -> str:
    """Typer frames usage errors in a box; read the words inside it."""
    return " ".join(text.replace("│", " ").split())


@pytest.fixture
def two_classes(flowers_sample: Path, tmp_path: Path) -> Path:
    return copy_dataset(
        tmp_path / "photos",
        {label: sample_photos(flowers_sample, label, 30) for label in ("daisy", "roses")},
    )


def test_missing_folder(bottleneck_dir: Path, tmp_path: Path) -> None:
    _assert_one_line_error(_train(tmp_path / "nope", bottleneck_dir, tmp_path), "does not exist")


def test_folder_without_classes(bottleneck_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _assert_one_line_error(_train(tmp_path / "empty", bottleneck_dir, tmp_path), "0 class folder", "at least 2")


def test_single_class(flowers_sample: Path, bottleneck_dir: Path, tmp_path: Path) -> None:
    photos = copy_dataset(tmp_path / "photos", {"daisy": sample_photos(flowers_sample, "daisy", 5)})
    _assert_one_line_error(_train(photos, bottleneck_dir, tmp_path), "1 class folder", "at least 2")


def test_class_without_images(two_classes: Path, bottleneck_dir: Path, tmp_path: Path) -> None:
    (two_classes / "tulips").mkdir()
    (two_classes / "tulips" / "notes.txt").write_text("no photos here")
    _assert_one_line_error(_train(two_classes, bottleneck_dir, tmp_path), "tulips", "has no images")


def test_unwritable_output_fails_before_any_work(two_classes: Path, bottleneck_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    run = _train(two_classes, bottleneck_dir, tmp_path, "--output-labels", blocker / "labels.txt")
    _assert_one_line_error(run, "cannot write the labels file")
    assert "Computing bottlenecks" not in run.stderr


def test_saved_model_path_that_is_a_file(two_classes: Path, bottleneck_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "model"
    blocker.write_text("")
    run = _train(two_classes, bottleneck_dir, tmp_path, "--saved-model-dir", blocker)
    _assert_one_line_error(run, "cannot write the SavedModel folder", "it exists and is a file")


def test_bad_batch_size_is_a_usage_error(two_classes: Path, bottleneck_dir: Path, tmp_path: Path) -> None:
    run = _train(two_classes, bottleneck_dir, tmp_path, "--train-batch-size", "0")
    assert run.exit_code == 2
    assert "must be a positive number of images, or -1" in _unboxed(run.stderr)


def test_missing_image_folder_argument() -> None:
    run = run_cli("train")
    assert run.exit_code == 2
    assert "missing the image folder" in _unboxed(run.stderr)


def test_corrupt_images_are_skipped_with_a_warning_each(
    two_classes: Path, bottleneck_dir: Path, tmp_path: Path
) -> None:
    truncated = two_classes / "daisy" / "truncated.jpg"
    good = next((two_classes / "daisy").glob("*.jpg"))
    truncated.write_bytes(good.read_bytes()[:400])
    (two_classes / "roses" / "not-a-photo.JPG").write_text("this is text, not a JPEG")
    (two_classes / "roses" / "empty.png").write_bytes(b"")
    run = _train(two_classes, bottleneck_dir, tmp_path)
    assert run.exit_code == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning: skipped unreadable image")]
    assert sorted(Path(line.split()[4].rstrip(":")).name for line in warnings) == [
        "empty.png",
        "not-a-photo.JPG",
        "truncated.jpg",
    ]
    assert "3 skipped" in run.stdout
    assert (tmp_path / "out" / "saved_model" / "saved_model.pb").is_file()


def test_cli_starts_without_importing_tensorflow() -> None:
    """`--help`, usage errors and the audit's cheap checks stay fast: TensorFlow loads only when a module is needed."""
    import subprocess
    import sys

    code = "import sys, retrain.cli, datacheck.audit; assert 'tensorflow' not in sys.modules, 'imported'"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


@pytest.mark.parametrize(
    "module",
    ["retrain.cli", "retrain.reports", "retrain.pytest_plugin", "retrain.core", "datacheck.audit", "datacheck.checks"],
)
def test_the_shell_the_reports_and_the_audit_import_without_tensorflow(module: str) -> None:
    """The core, the report renderer, the audit's checks and the shell leave TensorFlow out until a module is needed."""
    import subprocess
    import sys

    code = f"import sys, importlib, pkgutil; importlib.import_module({module!r}); print('tensorflow' in sys.modules)"
    if module == "retrain.core":  # every module of the core, not just the package
        code = (
            "import sys, importlib, pkgutil, retrain.core as core; "
            "[importlib.import_module(m.name) for m in pkgutil.iter_modules(core.__path__, 'retrain.core.')]; "
            "print('tensorflow' in sys.modules)"
        )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_findings_and_baselines_do_not_import_each_other() -> None:
    """A finding is a plain value: comparing it with a baseline builds on it, never the other way round."""
    import subprocess
    import sys

    code = "import sys, datacheck.findings; print('datacheck.baseline' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_pixel_checks_and_reports_run_without_tensorflow(flowers_sample: Path, tmp_path: Path) -> None:
    """`report` and a pixel-only `check` never import TensorFlow: no oneDNN notice, and sys.modules says so."""
    import subprocess
    import sys

    photos = copy_dataset(tmp_path / "photos", {c: sample_photos(flowers_sample, c, 3) for c in ("daisy", "roses")})
    code = (
        "import sys; from typer.testing import CliRunner; from retrain.cli import app; "
        f"r = CliRunner().invoke(app, ['check', {str(photos)!r}, '--only', "
        "'corrupt_image,exact_duplicates,class_imbalance,dark', '--fail-on', 'never']); "
        f"q = CliRunner().invoke(app, ['report', {str(tmp_path / 'nope')!r}]); "
        "print(r.exit_code, q.exit_code, 'tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["0", "2", "False"], result.stdout + result.stderr


def test_python_m_retrain_runs_from_tmp_beside_the_tutorials_cache_folder(two_classes: Path, tmp_path: Path) -> None:
    """``python -m`` puts the working folder on sys.path; in /tmp, the tutorial's cache folder ``bottleneck`` passed
    for pandas' optional `bottleneck` package and the audit died in an ImportError traceback."""
    import os
    import subprocess
    import sys

    (tmp_path / "bottleneck").mkdir()
    command = [sys.executable, "-m", "retrain", "check", str(two_classes), "--no-bottlenecks", "--only", "grayscale"]
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    completed = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
