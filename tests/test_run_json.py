"""metrics.json is the one file boundary of a run's typed report: what is written reads back the same, and a damaged
or hostile file is one InputError naming it, before any work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from retrain.core.errors import InputError
from retrain.core.run_json import read_run_report, run_report_document
from tests.conftest import CliRun, run_cli


def test_a_runs_metrics_read_back_as_written(trained_run: CliRun) -> None:
    metrics_file = trained_run.output_dir / "report" / "metrics.json"
    written = json.loads(metrics_file.read_text())
    report = read_run_report(metrics_file)
    assert run_report_document(report) == written
    assert report.test_accuracy == written["test_accuracy"] and report.gate.settings.min_accuracy is None
    assert report.facts.split.testing_percentage == 10.0 and report.durations.total > 0


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ('"test_accuracy": NaN', "is not JSON"),
        ('"test_accuracy": 1e400', "test_accuracy: Infinity is not a finite number"),
        ('"test_accuracy": 1.5', "test_accuracy: 1.5 is not a fraction between 0 and 1"),
        ('"test_accuracy": "0.9"', 'test_accuracy: "0.9" is not a finite number'),
        ('"test_images": -3', "test_images: -3 is not a whole number"),
        ('"seed": [7]', "run seed: [7] is not a whole number"),
        ('"module": 3', "run module: 3 is not text"),
        ('"train_accuracy": 1.5', "run training_curve train_accuracy: 1.5 is not a fraction between 0 and 1"),
    ],
)
def test_a_damaged_baseline_is_one_error_before_any_work(
    trained_run: CliRun, tmp_path: Path, change: str, problem: str
) -> None:
    text = (trained_run.output_dir / "report" / "metrics.json").read_text()
    key = change.split(":")[0]
    start = text.index(key)
    end = text.index("\n", start)
    damaged = tmp_path / "metrics.json"
    damaged.write_text(text[:start] + change + ("," if text[end - 1] == "," else "") + text[end:])
    with pytest.raises(InputError, match="metrics") as raised:
        read_run_report(damaged)
    assert problem in str(raised.value)
    run = run_cli("train", tmp_path / "no-such-folder", "--baseline", damaged)
    assert run.exit_code == 2 and run.stderr.startswith("error: ") and problem in run.stderr


def test_deep_nesting_is_not_a_crash(tmp_path: Path) -> None:
    deep = tmp_path / "metrics.json"
    deep.write_text('{"test_accuracy": 0.5, "per_class": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(InputError, match="is not JSON|per_class"):
        read_run_report(deep)


def test_an_older_metrics_json_without_a_training_curve_still_renders(trained_run: CliRun, tmp_path: Path) -> None:
    report_dir = shutil.copytree(trained_run.output_dir / "report", tmp_path / "report")
    written = json.loads((report_dir / "metrics.json").read_text())
    assert len(written.pop("training_curve")) == 10
    (report_dir / "metrics.json").write_text(json.dumps(written))
    assert read_run_report(report_dir / "metrics.json").facts.training_curve is None
    run = run_cli("report", report_dir)
    assert run.exit_code == 0, run.stderr
    page = (report_dir / "report.html").read_text()
    assert "<h2>Training curves</h2>" not in page and "<h2>Confusion matrix</h2>" in page
    assert "training_curve" not in json.loads((report_dir / "metrics.json").read_text())
