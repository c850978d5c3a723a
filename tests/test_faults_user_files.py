"""Every option that names an output folder, pointed at a folder of the user's: nothing of the user's is removed.

A folder that a run replaces whole (a report, a SavedModel, an audit folder) must be new, empty or one retrain-ci
wrote; anything else is refused with one line and exit 2, before any work. Outputs written beside the user's files
(``--output-dir``) leave them as they were.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from retrain.core.errors import InputError
from retrain.core.outputs import OutputSet, staged_output
from tests.conftest import CliRun, copy_dataset, run_cli, sample_photos


@pytest.fixture(scope="module")
def dataset(flowers_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("user-files") / "photos"
    return copy_dataset(root, {label: sample_photos(flowers_sample, label, 8) for label in ("daisy", "roses")})


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """A folder holding a user's file and a user's subfolder (with a file of its own)."""
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    (folder / "keep.txt").write_text("precious")
    (folder / "sub" / "notes.md").write_text("mine too")
    return folder


def _assert_untouched(folder: Path) -> None:
    assert (folder / "keep.txt").read_text() == "precious"
    assert (folder / "sub" / "notes.md").read_text() == "mine too"


def _assert_refused(run: CliRun, *fragments: str) -> None:
    assert run.exit_code == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _train(dataset: Path, bottleneck_dir: Path, tmp_path: Path, *options: str | Path) -> CliRun:
    return run_cli(
        "train", dataset, "--bottleneck-dir", bottleneck_dir, "--output-dir", tmp_path / "run",
        "--how-many-training-steps", "20", "--random-seed", "3", *options,
    )  # fmt: skip


@pytest.mark.parametrize("option", ["--report-dir", "--saved-model-dir"])
def test_train_refuses_a_replaced_folder_holding_a_users_files(
    option: str, dataset: Path, bottleneck_dir: Path, mixed: Path, tmp_path: Path
) -> None:
    run = _train(dataset, bottleneck_dir, tmp_path, option, mixed)
    _assert_refused(run, str(mixed), "keep.txt, sub", "retrain-ci did not write")
    _assert_untouched(mixed)
    assert not (tmp_path / "run").exists(), "refused before any work"


def test_train_refuses_log_folders_holding_a_users_files(
    dataset: Path, bottleneck_dir: Path, mixed: Path, tmp_path: Path
) -> None:
    (mixed / "train").mkdir()
    (mixed / "train" / "photo.jpg").write_bytes(b"not a log")
    run = _train(dataset, bottleneck_dir, tmp_path, "--summaries-dir", mixed)
    _assert_refused(run, "photo.jpg", "not a TensorBoard log")
    _assert_untouched(mixed)
    assert (mixed / "train" / "photo.jpg").read_bytes() == b"not a log"


@pytest.mark.parametrize("option", ["--tflite", "--output-graph", "--output-labels"])
def test_train_refuses_a_file_output_that_names_a_folder(
    option: str, dataset: Path, bottleneck_dir: Path, mixed: Path, tmp_path: Path
) -> None:
    _assert_refused(_train(dataset, bottleneck_dir, tmp_path, option, mixed), "it exists and is a folder")
    _assert_untouched(mixed)


def test_train_writes_beside_a_users_files_and_replaces_only_its_own(
    dataset: Path, bottleneck_dir: Path, mixed: Path
) -> None:
    """--output-dir and --summaries-dir on the user's folder: the run's outputs go beside the user's files, twice."""
    for _ in range(2):  # the second run replaces the first run's folders, which it recognises as its own
        run = run_cli(
            "train", dataset, "--bottleneck-dir", bottleneck_dir, "--output-dir", mixed, "--summaries-dir", mixed,
            "--how-many-training-steps", "20", "--random-seed", "3", "--tflite", mixed / "model.tflite",
        )  # fmt: skip
        assert run.exit_code == 0, run.stdout + run.stderr
        _assert_untouched(mixed)
    assert (mixed / "report" / "report.html").is_file() and (mixed / "saved_model" / "saved_model.pb").is_file()
    assert (mixed / "train").is_dir() and (mixed / "model.tflite").is_file()


def test_check_refuses_an_audit_folder_holding_a_users_files(dataset: Path, mixed: Path) -> None:
    _assert_refused(run_cli("check", dataset, "--only", "too_few_images", "--report-dir", mixed), "keep.txt, sub")
    _assert_untouched(mixed)
    _assert_refused(run_cli("check", dataset, "--only", "too_few_images", "--output", mixed), "is a folder")
    _assert_untouched(mixed)

    audit = mixed / "audit"
    for _ in range(2):  # a new folder inside the user's, then the same folder again: its own
        run = run_cli("check", dataset, "--only", "too_few_images", "--fail-on", "never", "--report-dir", audit)
        assert run.exit_code == 0, run.stdout + run.stderr
    assert sorted(path.name for path in audit.iterdir()) == [
        ".retrain-ci-output", "audit.html", "audit.json", "audit.md"
    ]  # fmt: skip
    _assert_untouched(mixed)

    (audit / "my-review.txt").write_text("the user's notes, added to the audit folder")
    _assert_refused(run_cli("check", dataset, "--only", "too_few_images", "--report-dir", audit), "my-review.txt")
    assert (audit / "my-review.txt").is_file()


@pytest.mark.parametrize("folder", [".", "..", "$PWD"])
def test_the_working_folder_is_never_an_output_folder(
    folder: str, dataset: Path, mixed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(mixed / "sub")
    name = str(Path.cwd()) if folder == "$PWD" else folder
    _assert_refused(run_cli("check", dataset, "--only", "too_few_images", "--report-dir", name), "cannot replace")
    _assert_untouched(mixed)


def test_evaluate_refuses_a_report_folder_holding_a_users_files(
    finished_model: Path, dataset: Path, mixed: Path
) -> None:
    _assert_refused(run_cli("evaluate", finished_model, dataset, "--report-dir", mixed), "keep.txt, sub")
    _assert_untouched(mixed)


def test_report_refuses_to_rewrite_a_folder_holding_a_users_files(finished_report: Path, tmp_path: Path) -> None:
    import shutil

    copied = tmp_path / "report"
    shutil.copytree(finished_report, copied)
    (copied / "keep.txt").write_text("precious")
    _assert_refused(run_cli("report", copied), "keep.txt", "retrain-ci did not write")
    assert (copied / "keep.txt").read_text() == "precious"


@pytest.fixture(scope="module")
def finished_run(dataset: Path, bottleneck_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output_dir = tmp_path_factory.mktemp("finished-user-files")
    run = _train(dataset, bottleneck_dir, output_dir)
    assert run.exit_code == 0, run.stdout + run.stderr
    return output_dir / "run"


@pytest.fixture
def finished_model(finished_run: Path) -> Path:
    return finished_run / "saved_model"


@pytest.fixture
def finished_report(finished_run: Path) -> Path:
    return finished_run / "report"


def test_a_users_file_added_during_a_run_stops_the_commit(tmp_path: Path) -> None:
    """Between the check before the work and the commit, a user's file appears in the folder: it is not replaced."""
    target = tmp_path / "report"
    with staged_output(target) as staging:
        staging.mkdir()
        (staging / "report.html").write_text("first run")
    with OutputSet(tmp_path / "labels.txt") as outputs:
        with outputs.staging(target, "report folder") as staging:
            staging.mkdir()
            (staging / "report.html").write_text("second run")
        (target / "keep.txt").write_text("precious")
        with pytest.raises(InputError, match="keep.txt, which retrain-ci did not write"):
            outputs.commit()
    assert (target / "keep.txt").read_text() == "precious"
    assert (target / "report.html").read_text() == "first run"
