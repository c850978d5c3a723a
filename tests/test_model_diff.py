"""A run against a baseline run: per-class deltas, the test photos that flipped, and the gate on them (issue 17)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrain.app.audit import settings_file
from retrain.app.training import gate_settings
from retrain.core.assessment import assess
from retrain.core.dataset import split_for
from retrain.core.display import markdown_text
from retrain.core.model_diff import changed_photos_line, shared_photos_line
from retrain.core.results import Evaluation
from retrain.core.run_json import BaselineRun, load_baseline_run, read_run_report
from retrain.core.run_report import RunFacts
from retrain.core.settings import GateSettings
from retrain.core.shard_store import content_key
from retrain.reports import write_report
from tests.conftest import DATA_ROOT, CliRun, copy_dataset, run_cli, sample_photos

FLOWERS_DEV = DATA_ROOT / "flowers-dev"


def _sha1(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def _outcomes(report: Path) -> dict[str, tuple[str, str, str]]:
    """content SHA-1 -> (path, true, predicted) of a report's predictions, computed here from the files themselves."""
    table = pd.read_csv(report / "predictions.csv", dtype=str, keep_default_na=False)
    return {_sha1(row.path): (row.path, row.true_label, row.predicted_label) for row in table.itertuples()}


def _test_photos(root: Path) -> list[Path]:
    return [p for p in sorted(root.rglob("*.jpg")) if split_for(p, 10, 10) == "testing"]


def _pull_request(flowers_sample: Path, root: Path) -> dict[str, list[str]]:
    """The sample as a pull request changes it: two test photos removed, three new ones, one moved to another class.

    Paths relative to the dataset folder."""
    shutil.copytree(flowers_sample, root)
    tests = _test_photos(root)
    gone = [tests[0], tests[-1]]
    for photo in gone:
        photo.unlink()
    moved = next(p for p in tests if p.parent.name == "roses")
    moved.rename(root / "tulips" / moved.name)
    sample_names = {p.name for p in flowers_sample.rglob("*.jpg")}
    new = []
    for label in ("daisy", "roses", "tulips"):
        photo = next(p for p in _test_photos(FLOWERS_DEV / label) if p.name not in sample_names)
        new.append(Path(shutil.copy(photo, root / label / photo.name)))
    relative = {"gone": gone, "moved": [root / "tulips" / moved.name], "new": new}
    return {what: [str(p.relative_to(root)) for p in paths] for what, paths in relative.items()}


@pytest.fixture(scope="module")
def second_run(
    trained_run: CliRun, flowers_sample: Path, bottleneck_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[CliRun, dict[str, list[str]], Path]:
    """A short run of a pull request's data against the session's trained run (its --output-dir) as the baseline."""
    photos = tmp_path_factory.mktemp("pr") / "photos"
    changes = _pull_request(flowers_sample, photos)
    run = run_cli(
        "train", photos,
        "--bottleneck-dir", bottleneck_dir,
        "--output-dir", tmp_path_factory.mktemp("pr-run"),
        "--how-many-training-steps", "40", "--learning-rate", "0.02", "--random-seed", "3",
        "--eval-step-interval", "40",
        "--baseline", trained_run.output_dir,
    )  # fmt: skip
    return run, changes, photos


def test_flipped_photos_are_matched_by_content_and_a_changed_test_set_is_counted_apart(
    trained_run: CliRun, flowers_sample: Path, second_run: tuple[CliRun, dict[str, list[str]], Path]
) -> None:
    run, changes, photos = second_run
    assert run.exit_code in (0, 1), run.stdout + run.stderr  # 1: the short run may fail --max-regression
    report = run.output_dir / "report"
    metrics = json.loads((report / "metrics.json").read_text())
    diff = metrics["baseline"]
    assert diff["baseline"] == str((trained_run.output_dir / "report" / "metrics.json").resolve())
    assert metrics["split"] == {"testing_percentage": 10.0, "validation_percentage": 10.0}

    before, after = _outcomes(trained_run.output_dir / "report"), _outcomes(report)
    shared = before.keys() & after.keys()
    same_class = {key for key in shared if before[key][1] == after[key][1]}
    right = {key for key in same_class if before[key][1] == before[key][2]}
    right_now = {key for key in same_class if after[key][1] == after[key][2]}
    images = diff["images"]
    assert {item["path"] for item in images["now_wrong"]} == {after[key][0] for key in right - right_now}
    assert {item["path"] for item in images["now_right"]} == {after[key][0] for key in right_now - right}
    assert images["now_wrong"] or images["now_right"], "the short run should flip some of the trained run's photos"
    for item in images["now_wrong"] + images["now_right"]:
        assert (item["true_label"], item["predicted_before"]) == before[item["content_key"]][1:]
        assert item["predicted_after"] == after[item["content_key"]][2]

    new = {after[key][0] for key in after.keys() - before.keys()}
    assert images["new"] == 3 and new == {str((photos / p).resolve()) for p in changes["new"]}
    gone = {before[key][0] for key in before.keys() - after.keys()}
    assert images["gone"] == 2 and gone == {str((flowers_sample / p).resolve()) for p in changes["gone"]}
    assert images["relabelled"] == 1 and images["unchanged"] + len(right ^ right_now) == len(shared) - 1
    assert (
        diff["accuracy_before"]
        == json.loads((trained_run.output_dir / "report" / "metrics.json").read_text())["test_accuracy"]
    )

    # The story: what changed in the test data, then what the model did on the photos both runs share.
    read_back = read_run_report(report / "metrics.json").diff
    data, model = changed_photos_line(read_back), shared_photos_line(read_back)
    assert data.startswith("3 new test photos (daisy 1, roses 1, tulips 1); 2 photos left the test set (")
    assert "; 1 test photo relabelled roses -> tulips: the model " in data
    flipped = len(images["now_wrong"]) + len(images["now_right"])
    shared = len(same_class)  # what the gate compares: in both runs under the same class
    assert f"{flipped} test image" in model
    assert (images["shared_right_before"], images["shared_right_after"]) == (len(right), len(right_now))
    stdout = run.stdout.splitlines()
    told = [stdout.index(f"Test data: {data}"), stdout.index(f"The {shared} test photos both runs share: {model}")]
    assert told == sorted(told) and told[1] < next(i for i, line in enumerate(stdout) if line.startswith("Gate: "))
    summary = (report / "summary.md").read_text().splitlines()
    assert summary[:5] == [
        "## retrain-ci report",
        "",
        f"**Test data:** {markdown_text(data)}.",
        "",
        f"**The {shared} test photos both runs share:** {markdown_text(model)}.",
    ]
    page = (report / "report.html").read_text()
    section = page[page.index("<h2>Against the baseline</h2>") : page.index("<h2>Misclassified")]
    assert section.count('<img src="data:image/jpeg;base64,') == flipped + 1  # and the relabelled photo
    for item in images["now_wrong"] + images["now_right"] + images["relabelled_images"]:
        assert Path(item["path"]).name in section

    rendered = run_cli("report", run.output_dir, "--print-summary")
    assert rendered.exit_code == 0 and f"**Test data:** {markdown_text(data)}." in rendered.stdout
    assert json.loads((report / "metrics.json").read_text())["baseline"] == diff


@pytest.fixture(scope="module")
def golden_baseline(trained_run: CliRun, flowers_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``evaluate`` of the trained model on a golden folder (10 daisies, 2 tulips), kept as a report: a baseline."""
    root = tmp_path_factory.mktemp("golden")
    golden = copy_dataset(
        root / "photos",
        {"daisy": sample_photos(flowers_sample, "daisy", 10), "tulips": sample_photos(flowers_sample, "tulips", 2)},
    )
    run = run_cli("evaluate", trained_run.output_dir / "saved_model", golden, "--report-dir", root / "report")
    assert run.exit_code == 0, run.stdout + run.stderr
    return root


def test_an_older_baseline_still_gives_the_deltas_and_asks_for_a_newer_one(
    trained_run: CliRun, golden_baseline: Path, tmp_path: Path
) -> None:
    old = shutil.copytree(golden_baseline / "report", tmp_path / "old")
    table = pd.read_csv(old / "predictions.csv")
    table.drop(columns="content_key").to_csv(old / "predictions.csv", index=False)
    assert run_cli("report", old).exit_code == 0  # an old report still renders
    assert "content_key" not in pd.read_csv(old / "predictions.csv").columns

    model, golden = trained_run.output_dir / "saved_model", golden_baseline / "photos"
    run = run_cli("evaluate", model, golden, "--baseline", old, "--format", "json")
    assert run.exit_code == 0, run.stderr
    diff = json.loads(run.stdout)["baseline"]
    assert diff["images"] is None and diff["note"].startswith("flipped images need a newer baseline")
    assert diff["accuracy_before"] == diff["accuracy_after"]
    assert [(c["label"], c["support_before"], c["support_after"]) for c in diff["classes"] if c["support_after"]] == [
        ("daisy", 10, 10),
        ("tulips", 2, 2),
    ]

    lone = tmp_path / "lone" / "main_metrics.json"  # a metrics.json alone, as the action kept it
    lone.parent.mkdir()
    shutil.copy(old / "metrics.json", lone)
    run = run_cli("evaluate", model, golden, "--baseline", lone, "--report-dir", tmp_path / "report")
    assert run.exit_code == 0, run.stderr
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "flipped images need a newer baseline" in summary and "accuracy" in summary.splitlines()[2]
    assert "Against the baseline: accuracy" in run.stdout


def test_other_split_settings_are_not_compared_photo_by_photo_but_still_gated(
    trained_run: CliRun, flowers_sample: Path, bottleneck_dir: Path, tmp_path: Path
) -> None:
    run = run_cli(
        "train", flowers_sample, "--bottleneck-dir", bottleneck_dir, "--output-dir", tmp_path,
        "--testing-percentage", "20", "--how-many-training-steps", "1", "--learning-rate", "0.0001",
        "--random-seed", "7", "--no-tta", "--no-mirror-training",
        "--baseline", trained_run.output_dir / "report" / "metrics.json",
    )  # fmt: skip
    assert run.exit_code == 1, run.stdout + run.stderr
    (failure,) = [line for line in run.stderr.splitlines() if line.startswith("FAILED")]
    assert "from the baseline's" in failure and "(over --max-regression 2.0 points)" in failure
    diff = json.loads((tmp_path / "report" / "metrics.json").read_text())["baseline"]
    assert diff["images"] is None
    assert diff["note"] == (
        "not comparable photo by photo (split (testing_percentage 10.0, validation_percentage 10.0) -> "
        "(testing_percentage 20.0, validation_percentage 10.0))"
    )
    assert "not comparable photo by photo" in (tmp_path / "report" / "report.html").read_text()


def test_a_class_whose_recall_dropped_fails_the_gate_unless_it_has_too_few_test_photos(
    trained_run: CliRun, golden_baseline: Path, flowers_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sunflowers filed as daisies (10) and as tulips (2): both recalls collapse; tulips has too few photos to gate.
    sunflowers = sample_photos(flowers_sample, "sunflowers", 12)
    golden = copy_dataset(tmp_path / "photos", {"daisy": sunflowers[:10], "tulips": sunflowers[10:]})
    (tmp_path / "retrain-ci.toml").write_text("max-class-regression = 0.2\n")  # the project's setting
    monkeypatch.chdir(tmp_path)
    model = trained_run.output_dir / "saved_model"
    run = run_cli("evaluate", model, golden, "--baseline", golden_baseline, "--report-dir", tmp_path / "report")
    assert run.exit_code == 1, run.stdout + run.stderr
    (failure,) = [line for line in run.stderr.splitlines() if line.startswith("FAILED")]
    words = r"recall dropped more than --max-class-regression 20\.0 points from the baseline's: daisy \d+\.\d% -> 0\.0%"
    assert re.search(words, failure)
    assert "tulips" not in failure

    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["gate"]["max_class_regression"] == 0.2 and metrics["gate"]["min_class_support"] == 10
    tulips = next(c for c in metrics["baseline"]["classes"] if c["label"] == "tulips")
    assert tulips["support_after"] == 2 and tulips["recall_after"] < tulips["recall_before"]
    assert "no (under 10 images)" in (tmp_path / "report" / "report.html").read_text()
    images = metrics["baseline"]["images"]
    assert (images["new"], images["gone"], images["now_right"], images["now_wrong"]) == (12, 12, [], [])


def test_the_gate_thresholds_come_from_the_options_else_the_settings_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.retrain-ci]\nmax-class-regression = 0.05\nmin-class-support = 4\nmax-regression = 0\n"
        "min-test-images = 40\n"
    )
    from_file = gate_settings(
        settings_file(tmp_path / "photos", None, tmp_path).path,
        None,
        max_class_regression=None,
        min_class_support=None,
        max_regression=None,
    )
    assert (from_file.max_class_regression, from_file.min_class_support, from_file.max_regression) == (0.05, 4, 0.0)
    assert from_file.min_test_images == 40
    given = gate_settings(
        settings_file(tmp_path / "photos", None, tmp_path).path,
        None,
        max_class_regression=0.3,
        min_class_support=None,
        max_regression=None,
    )
    assert (given.max_class_regression, given.min_class_support) == (0.3, 4)
    assert (
        gate_settings(
            settings_file(tmp_path / "photos", None, tmp_path / "elsewhere").path, None, max_class_regression=None
        ).min_class_support
        == 10
    )


def _bad_baselines(root: Path, golden_baseline: Path) -> dict[str, tuple[Path, str]]:
    """Each kind of bad baseline and the words of its one-line error."""
    root.mkdir()
    (root / "empty").mkdir()
    (root / "notes.json").write_text("hello")
    (root / "audit.json").write_text(json.dumps({"summary": {"images": 3}, "findings": []}))
    (root / "classes.json").write_text(json.dumps({"test_accuracy": 0.9, "per_class": {"daisy": 0.9}}))
    mismatched = shutil.copytree(golden_baseline / "report", root / "mismatched")
    table = pd.read_csv(mismatched / "predictions.csv")
    table.iloc[1:].to_csv(mismatched / "predictions.csv", index=False)
    return {
        "missing": (root / "nope.json", "cannot read the baseline metrics"),
        "empty": (root / "empty", "holds no retrain-ci report"),
        "not json": (root / "notes.json", "it is not JSON"),
        "an audit": (root / "audit.json", "is not a retrain-ci run's metrics.json (no test_accuracy in it)"),
        "bad classes": (root / "classes.json", "per_class is not each class's recall and support"),
        "mismatched": (mismatched, "predictions.csv does not match"),
    }


def test_a_bad_baseline_is_one_error_line_before_any_work(
    trained_run: CliRun, golden_baseline: Path, flowers_sample: Path, tmp_path: Path
) -> None:
    model = trained_run.output_dir / "saved_model"
    for what, (baseline, words) in _bad_baselines(tmp_path / "baselines", golden_baseline).items():
        out = tmp_path / "out"
        for run in (
            run_cli("train", flowers_sample, "--output-dir", out, "--baseline", baseline),
            run_cli("evaluate", model, golden_baseline / "photos", "--report-dir", out, "--baseline", baseline),
        ):
            assert run.exit_code == 2, (what, run.stdout, run.stderr)
            (line,) = run.stderr.splitlines()
            assert line.startswith("error: ") and words in line, (what, line)
            assert run.stdout == "" and not out.exists(), what


def test_the_baseline_section_escapes_names(flowers_sample: Path, tmp_path: Path) -> None:
    labels = ("<script>alert(1)</script>", "esc\x1b[31mred")
    photos = copy_dataset(tmp_path / "photos", {"a": sample_photos(flowers_sample, "daisy", 2)})
    first, second = sorted((photos / "a").iterdir())
    paths = [first.rename(first.with_name("<img src=x onerror=alert(1)>.jpg")), second]
    keys = [content_key(p) for p in paths]

    def report(folder: str, probabilities: list[list[float]], baseline: BaselineRun | None) -> Path:
        evaluation = Evaluation(labels, paths, np.array([0, 1]), np.array(probabilities), [], keys)
        gate = GateSettings(min_class_support=1)
        write_report(tmp_path / folder, evaluation, assess(evaluation, RunFacts(dataset=""), gate, baseline))
        return tmp_path / folder

    baseline = load_baseline_run(report("main", [[0.9, 0.1], [0.2, 0.8]], None))
    page = (report("pr", [[0.3, 0.7], [0.2, 0.8]], baseline) / "report.html").read_text()
    section = page[page.index("<h2>Against the baseline</h2>") : page.index("<h2>Misclassified")]
    assert "<script>" not in section and "\x1b" not in section and "<img src=x" not in section
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in section and "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    assert section.count('<img src="data:image/jpeg;base64,') == 1  # the one photo now wrong
    line = (tmp_path / "pr" / "summary.md").read_text().splitlines()[2]
    assert "\x1b" not in line and "1 test image flipped (0 now right, 1 now wrong)" in line


# Issue 27: the gate compares like with like. 30% of the sample is tested (52 photos, 7 to 15 a class) so that every
# class is gated per class with --min-class-support 5.
LIKE_WITH_LIKE = ("--testing-percentage", "30", "--random-seed", "5", "--max-class-regression", "0.05",
                  "--min-class-support", "5")  # fmt: skip


@pytest.fixture(scope="module")
def relabelled(
    flowers_sample: Path, bottleneck_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, CliRun, list[str]]:
    """A baseline run on a copy of the sample, then 3 of its tulip test photos (ones it got right) moved into daisy."""
    root = tmp_path_factory.mktemp("relabelled")
    photos = shutil.copytree(flowers_sample, root / "photos")
    baseline = run_cli(
        "train", photos, "--bottleneck-dir", bottleneck_dir, "--output-dir", root / "main",
        "--how-many-training-steps", "500", *LIKE_WITH_LIKE,
    )  # fmt: skip
    assert baseline.exit_code == 0, baseline.stdout + baseline.stderr
    table = pd.read_csv(root / "main" / "report" / "predictions.csv")
    right = table[(table["true_label"] == "tulips") & (table["predicted_label"] == "tulips")]
    moved = sorted(right["path"])[:3]
    assert len(moved) == 3 and all(split_for(Path(path), 30, 10) == "testing" for path in moved)
    for path in moved:
        shutil.move(path, photos / "daisy" / Path(path).name)
    return photos, baseline, [Path(path).name for path in moved]


def _head_run(relabelled: tuple[Path, CliRun, list[str]], bottleneck_dir: Path, output_dir: Path, *args: str) -> CliRun:
    photos, baseline, _ = relabelled
    return run_cli(
        "train", photos, "--bottleneck-dir", bottleneck_dir, "--output-dir", output_dir,
        "--baseline", baseline.output_dir, *LIKE_WITH_LIKE, *args,
    )  # fmt: skip


def test_relabelled_test_photos_are_reported_as_such_and_not_held_against_the_model(
    relabelled: tuple[Path, CliRun, list[str]], bottleneck_dir: Path, tmp_path: Path
) -> None:
    photos, _, moved = relabelled
    run = _head_run(relabelled, bottleneck_dir, tmp_path, "--how-many-training-steps", "500", "--min-test-images", "50")
    assert run.exit_code == 0, run.stdout + run.stderr
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    diff = metrics["baseline"]
    # The whole test sets say daisy got worse, by more than the limit: the old gate blamed the model for the moves.
    daisy = next(change for change in diff["classes"] if change["label"] == "daisy")
    assert (
        daisy["recall_after"] < daisy["recall_before"] - 0.05 and daisy["support_after"] == daisy["support_before"] + 3
    )
    images = diff["images"]
    assert images["relabelled"] == 3 and (images["new"], images["gone"]) == (0, 0)
    told_apart = [
        (Path(item["path"]).name, item["label_before"], item["label_after"], item["predicted_after"])
        for item in images["relabelled_images"]
    ]
    assert told_apart == [(name, "tulips", "daisy", "tulips") for name in moved]
    assert all(change["recall_after"] == change["recall_before"] for change in images["shared_classes"])
    assert images["shared_right_before"] == images["shared_right_after"]

    told = "3 test photos relabelled tulips -> daisy: the model still says tulips"
    stdout = run.stdout.splitlines()
    assert stdout.index(f"Test data: {told}") < stdout.index("Gate: passed")
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert summary.splitlines()[2] == f"**Test data:** {told}."
    for name in moved:
        assert f"- {markdown_text(name)}: tulips -> daisy, the model says tulips (said tulips)" in summary
    page = (tmp_path / "report" / "report.html").read_text()
    section = page[page.index("<h3>Relabelled test photos (3)") : page.index("test photos both runs share:</b>")]
    assert section.count('<img src="data:image/jpeg;base64,') == 3 and all(name in section for name in moved)


def test_the_gate_fires_when_the_model_gets_worse_on_the_photos_both_runs_share(
    relabelled: tuple[Path, CliRun, list[str]], bottleneck_dir: Path, tmp_path: Path
) -> None:
    # One step at a tiny learning rate: the head is barely trained, a model truly worse on the same photos.
    run = _head_run(relabelled, bottleneck_dir, tmp_path, "--how-many-training-steps", "1", "--learning-rate", "0.0001")
    assert run.exit_code == 1, run.stdout + run.stderr
    (failure,) = [line for line in run.stderr.splitlines() if line.startswith("FAILED")]
    images = json.loads((tmp_path / "report" / "metrics.json").read_text())["baseline"]["images"]
    shared = images["unchanged"] + len(images["now_right"]) + len(images["now_wrong"])
    assert images["shared_right_after"] < images["shared_right_before"]
    assert f"accuracy on the {shared} test photos both runs share dropped" in failure
    assert "recall on the test photos both runs share dropped more than --max-class-regression 5.0 points" in failure
    assert images["relabelled"] == 3  # still reported apart
    assert f"Gate: {failure}" in run.stdout


def _as_before_issue_27(value: object) -> object:
    """A metrics.json as runs wrote it before intervals, warnings and the shared part existed."""
    newer = {"test_accuracy_interval", "recall_interval", "warnings", "min_test_images", "shared_right_before",
             "shared_right_after", "shared_classes", "relabelled_images", "new_by_class", "gone_by_class"}  # fmt: skip
    if isinstance(value, dict):
        return {key: _as_before_issue_27(item) for key, item in value.items() if key not in newer}
    if isinstance(value, list):
        return [_as_before_issue_27(item) for item in value]
    return value


def test_an_older_metrics_json_still_loads_renders_and_serves_as_a_baseline(
    trained_run: CliRun, golden_baseline: Path, second_run: tuple[CliRun, dict[str, list[str]], Path], tmp_path: Path
) -> None:
    run, _, _ = second_run
    old = shutil.copytree(run.output_dir / "report", tmp_path / "old-run")
    document = json.loads((old / "metrics.json").read_text())
    (old / "metrics.json").write_text(json.dumps(_as_before_issue_27(document)))
    report = read_run_report(old / "metrics.json")
    assert report.accuracy_interval is None and report.diff.images.shared_accuracy_before is None
    rendered = run_cli("report", old, "--print-summary")
    assert rendered.exit_code == 0, rendered.stderr
    assert "1 moved to another class" in rendered.stdout and "| n/a |" in rendered.stdout

    golden = shutil.copytree(golden_baseline / "report", tmp_path / "old-golden")
    document = json.loads((golden / "metrics.json").read_text())
    (golden / "metrics.json").write_text(json.dumps(_as_before_issue_27(document)))
    model, photos = trained_run.output_dir / "saved_model", golden_baseline / "photos"
    again = run_cli(
        "evaluate", model, photos, "--baseline", golden, "--max-class-regression", "0.05", "--format", "json"
    )
    assert again.exit_code == 0, again.stderr
    images = json.loads(again.stdout)["baseline"]["images"]
    assert images["shared_right_before"] == images["shared_right_after"] and len(images["shared_classes"]) == 2
