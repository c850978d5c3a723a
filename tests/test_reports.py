"""Reports after every run, and the CI gate: exit codes a build can rely on, numbers that agree everywhere."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from retrain.core.gate import GateScores, judge
from retrain.core.run_report import wilson_interval
from retrain.core.settings import GateSettings
from tests.conftest import CliRun, copy_dataset, run_cli, sample_photos


@pytest.fixture(scope="module")
def report_dir(trained_run: CliRun) -> Path:
    return trained_run.output_dir / "report"


def test_report_files_agree_with_each_other(report_dir: Path, trained_run: CliRun) -> None:
    metrics = json.loads((report_dir / "metrics.json").read_text())
    confusion = pd.read_csv(report_dir / "confusion_matrix.csv", index_col=0)
    misclassified = pd.read_csv(report_dir / "misclassified.csv")
    total, correct = int(confusion.to_numpy().sum()), int(confusion.to_numpy().trace())
    assert list(confusion.index) == list(confusion.columns) == list(metrics["per_class"])
    assert total == metrics["test_images"] == sum(row["support"] for row in metrics["per_class"].values())
    assert correct / total == pytest.approx(metrics["test_accuracy"])
    assert len(misclassified) == total - correct
    assert list(misclassified["confidence"]) == sorted(misclassified["confidence"], reverse=True)
    for row in misclassified.itertuples():
        assert Path(row.path).parent.name == row.true_label != row.predicted_label
    for label, row in metrics["per_class"].items():
        assert row["recall"] == pytest.approx(confusion.loc[label, label] / confusion.loc[label].sum())
    printed = float(re.search(r"Final test accuracy = ([\d.]+)%", trained_run.stdout)[1]) / 100
    assert printed == pytest.approx(metrics["test_accuracy"], abs=0.0006)
    assert f"{metrics['test_accuracy']:.1%}" in (report_dir / "summary.md").read_text()


def test_metrics_say_what_produced_them(report_dir: Path) -> None:
    metrics = json.loads((report_dir / "metrics.json").read_text())
    assert 0 <= metrics["validation_accuracy"] <= 1
    assert metrics["module"] == "efficientnet_lite0" and metrics["image_size"] == [224, 224]
    assert metrics["steps"] == 1000 and metrics["seed"] == 7  # the step budget for 160 training photos
    assert re.fullmatch(r"[0-9a-f]{40}", metrics["dataset_fingerprint"])
    assert metrics["images"]["testing"] == metrics["test_images"]
    assert set(metrics["durations_seconds"]) == {"bottlenecks", "training", "total"}
    assert metrics["tool_version"] and metrics["tensorflow_version"]
    assert "top5_accuracy" not in metrics  # five classes: top-5 would always be 100%


class _Page(HTMLParser):
    """report.html as a reader sees it: its words outside the charts, its tables by caption (rows of cell texts), and
    the words drawn in each section's charts (SVG text is text), by the section's heading."""

    def __init__(self) -> None:
        super().__init__()
        self.words: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.charts: dict[str, list[str]] = {}
        self._open: list[str] = []
        self._heading = ""
        self._caption: list[str] | None = None
        self._rows: list[list[str]] = []
        self._cell: list[str] | None = None

    @classmethod
    def of(cls, file: Path) -> _Page:
        page = cls()
        page.feed(file.read_text(encoding="utf-8"))
        return page

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.words).split())

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._open.append(tag)
        if tag == "h2":
            self._heading = ""
        elif tag == "table":
            self._rows, self._caption = [], []
        elif tag == "tr":
            self._rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop() != tag:
            pass
        if tag in ("td", "th") and self._cell is not None:
            self._rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self.tables[" ".join("".join(self._caption or []).split())] = self._rows

    def handle_data(self, data: str) -> None:
        if "style" in self._open or "title" in self._open:
            return
        if "svg" in self._open:
            self.charts.setdefault(self._heading, []).append(data.strip())
            return
        self.words.append(data)
        if "h2" in self._open:
            self._heading += data
        if "caption" in self._open and self._caption is not None:
            self._caption.append(data)
        elif self._cell is not None:
            self._cell.append(data)


# A fraction written as in the gate's lines (0.8920): the page writes every fraction as a percentage (89.2%).
FRACTION = re.compile(r"(?<![\w.])[01]\.\d{3,}(?!\d)")


def test_report_html_leads_with_the_verdict_and_writes_every_fraction_as_a_percentage(
    report_dir: Path, trained_run: CliRun
) -> None:
    metrics = json.loads((report_dir / "metrics.json").read_text())
    page = _Page.of(report_dir / "report.html")
    assert page.text.startswith(
        "retrain-ci report NOT GATED no gate condition was asked for (--min-accuracy, --min-class-recall, --baseline, "
        f"--min-test-images) {metrics['test_accuracy']:.1%} test accuracy"
    )
    assert FRACTION.findall(page.text) == []
    assert re.search(r"\bNone\b|\{'|\['", page.text) is None


def test_report_html_draws_the_runs_own_training_curve(report_dir: Path) -> None:
    curve = json.loads((report_dir / "metrics.json").read_text())["training_curve"]
    assert [point["step"] for point in curve] == list(range(100, 1001, 100))  # --eval-step-interval 100
    assert set(curve[0]) == {
        "step", "train_accuracy", "train_cross_entropy", "validation_accuracy", "validation_cross_entropy",
    }  # fmt: skip
    assert all(0 <= point["validation_accuracy"] <= 1 for point in curve)
    assert curve[-1]["train_cross_entropy"] < curve[0]["train_cross_entropy"]  # it learned
    drawn = _Page.of(report_dir / "report.html").charts["Training curves"]
    assert {"Accuracy", "Cross-entropy (loss)", "training step", "training batch", "validation sample", "1000"} <= set(
        drawn
    )


def test_the_confusion_matrix_picture_shades_each_cell_by_its_count(tmp_path: Path) -> None:
    """confusion_matrix.png: one cell per (true, predicted) pair, darker for more photos, the largest count darkest."""
    from PIL import Image

    from retrain.charts import confusion_png

    counts = np.array([[9, 1, 0], [2, 5, 0], [0, 3, 4]])
    path = tmp_path / "confusion.png"
    path.write_bytes(confusion_png(counts, ["daisy", "roses", "tulips"], "Confusion matrix (test images)"))
    image = Image.open(path).convert("L")
    # The cells' centres, found from the picture's layout: 56-pixel cells under a 40-pixel title, labels on the left.
    left = image.width - 30 - 3 * 56
    shade = [[image.getpixel((left + 56 * col + 6, 40 + 56 * row + 6)) for col in range(3)] for row in range(3)]
    order = np.argsort(counts.ravel(), kind="stable")
    assert np.all(np.diff(np.array(shade).ravel()[order]) <= 0)  # more photos, darker (or as dark)
    assert shade[0][0] < 80 and shade[0][2] > 230


def test_report_html_shows_the_confusion_matrix_normalised_by_true_class(report_dir: Path) -> None:
    metrics = json.loads((report_dir / "metrics.json").read_text())
    confusion = pd.read_csv(report_dir / "confusion_matrix.csv", index_col=0)
    tables = _Page.of(report_dir / "report.html").tables
    counts, normalised = tables["Test images"], tables["Normalised by true class (recall)"]
    labels = list(confusion.index)
    assert counts[0][1:] == normalised[0][1:] == [*labels, "images"]
    for i, label in enumerate(labels):
        images = int(confusion.loc[label].sum())
        assert counts[i + 1] == [label, *map(str, confusion.loc[label]), str(images)]
        shares = normalised[i + 1]
        assert shares[0] == label and shares[-1] == str(images)
        assert shares[i + 1] == f"{metrics['per_class'][label]['recall']:.1%}"  # the diagonal is the recall
        assert sum(float(share.rstrip("%")) for share in shares[1:-1]) == pytest.approx(100, abs=0.3)


def test_report_html_shows_the_confidence_of_right_and_wrong_predictions(report_dir: Path) -> None:
    metrics = json.loads((report_dir / "metrics.json").read_text())
    wrong = len(pd.read_csv(report_dir / "misclassified.csv"))
    drawn = _Page.of(report_dir / "report.html").charts["Confidence of the test predictions"]
    assert f"right ({metrics['test_images'] - wrong})" in drawn and f"wrong ({wrong})" in drawn
    assert "top-class probability" in drawn and "100%" in drawn


def test_misclassified_photos_name_the_audit_checks_that_flag_them(
    trained_run: CliRun, flowers_sample: Path, tmp_path: Path
) -> None:
    report_dir = shutil.copytree(trained_run.output_dir / "report", tmp_path / "report")
    mistakes = pd.read_csv(report_dir / "misclassified.csv")
    assert len(mistakes), "the trained run got every test photo right: nothing to link"
    photo = Path(mistakes["path"][0])
    # The dataset's audit finds the photo twice (a copy under another name): exact_duplicates names it.
    data = copy_dataset(tmp_path / "data", {c: sample_photos(flowers_sample, c, 6) for c in ("daisy", "roses")})
    (data / mistakes["true_label"][0]).mkdir(exist_ok=True)
    shutil.copy(photo, data / mistakes["true_label"][0] / photo.name)
    shutil.copy(photo, data / mistakes["true_label"][0] / f"copy-{photo.name}")
    run_cli("check", data, "--only", "exact_duplicates", "--format", "json", "--output", tmp_path / "audit.json")

    run = run_cli("report", report_dir, "--audit", tmp_path / "audit.json")
    assert run.exit_code == 0, run.stderr
    page = _Page.of(report_dir / "report.html")
    cards = page.text.split("Misclassified test images")[1].split("How this run was made")[0]
    assert f"The audit names 1 of the {len(mistakes)} shown" in cards
    flagged = cards.split(photo.name)[1]
    assert flagged.split(")", 1)[1].strip().startswith("audit: exact_duplicates")
    assert cards.count("audit: ") == 1
    assert "audit: " not in _Page.of(trained_run.output_dir / "report" / "report.html").text


def test_fine_tuning_curves_are_drawn_per_epoch(tmp_path: Path) -> None:
    from retrain.core.assessment import assess
    from retrain.core.results import EpochResult, Evaluation
    from retrain.core.run_json import read_run_report
    from retrain.core.run_report import FineTuneFacts, RunFacts
    from retrain.core.settings import FineTuneSettings
    from retrain.reports import write_report

    epochs = (
        EpochResult(0, None, None, 0.80, 0.60, 3.0),
        EpochResult(1, 0.85, 0.50, 0.86, 0.45, 30.0),
        EpochResult(2, 0.90, 0.40, 0.84, 0.47, 30.0),
    )
    facts = RunFacts(dataset="", fine_tune=FineTuneFacts(FineTuneSettings(blocks=2, epochs=2), 224, 1, epochs))
    evaluation = Evaluation(("a", "b"), [tmp_path / "1.jpg", tmp_path / "2.jpg"], np.array([0, 1]),
                            np.array([[0.9, 0.1], [0.7, 0.3]]), [])  # fmt: skip
    write_report(tmp_path / "report", evaluation, assess(evaluation, facts, GateSettings(), None))
    page = _Page.of(tmp_path / "report" / "report.html")
    assert "Fine-tuning, per epoch (the top 2 blocks at 224x224; epoch 1 kept)" in page.text
    assert {"kept: epoch 1", "training (augmented)", "validation", "epoch (0: the new layer alone)"} <= set(
        page.charts["Training curves"]
    )
    assert read_run_report(tmp_path / "report" / "metrics.json").facts.fine_tune.epochs_run == epochs


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "img":
            self.sources.append(attributes["src"])
        for key in ("href", "src"):
            if key in attributes:
                self.links.append(attributes[key])


def test_html_report_is_self_contained_with_misclassified_thumbnails(report_dir: Path) -> None:
    page = _Images()
    page.feed((report_dir / "report.html").read_text())
    assert all(link.startswith("data:") for link in page.links)  # nothing to fetch: opens offline, as one file
    for source in page.sources:
        with Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))) as image:
            image.verify()
    misclassified = len(pd.read_csv(report_dir / "misclassified.csv"))
    assert len(page.sources) == misclassified  # one thumbnail per mistake; the charts are drawn in the page


def test_report_command_rerenders_and_writes_step_summary(
    trained_run: CliRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report_dir = trained_run.output_dir / "report"
    before = json.loads((report_dir / "metrics.json").read_text())
    (report_dir / "report.html").unlink()
    step_summary = tmp_path / "step_summary.md"
    step_summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    run = run_cli("report", trained_run.output_dir, "--github-step-summary", "--print-summary")
    assert run.exit_code == 0, run.stderr
    assert (report_dir / "report.html").is_file()
    assert json.loads((report_dir / "metrics.json").read_text()) == before
    summary = (report_dir / "summary.md").read_text()
    assert run.stdout == summary
    assert step_summary.read_text() == "earlier step\n" + summary


def test_report_command_needs_a_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = run_cli("report", tmp_path)
    assert run.exit_code == 2 and "holds no retrain-ci report" in run.stderr
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def test_report_with_an_audit_leads_with_what_the_change_did(
    trained_run: CliRun, flowers_sample: Path, tmp_path: Path
) -> None:
    report_dir = shutil.copytree(trained_run.output_dir / "report", tmp_path / "report")
    data = copy_dataset(tmp_path / "data", {c: sample_photos(flowers_sample, c, 6) for c in ("daisy", "roses")})
    pixels = ("--only", "corrupt_image,exact_duplicates", "--format", "json", "--output")
    assert run_cli("check", data, *pixels, tmp_path / "main.json").exit_code == 0
    shutil.copy(sample_photos(flowers_sample, "roses", 7)[-1], data / "roses")
    shutil.move(next((data / "daisy").glob("*.jpg")), data / "roses")
    check = run_cli("check", data, "--baseline", tmp_path / "main.json", *pixels, tmp_path / "pr.json")
    assert check.exit_code == 0, check.stderr
    change = json.loads((tmp_path / "pr.json").read_text())["summary"]["change"]
    assert change == "+1 roses, 1 moved daisy -> roses; caused: none; fixed: 0"

    run = run_cli("report", report_dir, "--audit", tmp_path / "pr.json", "--print-summary")
    assert run.exit_code == 0, run.stderr
    assert run.stdout.splitlines()[2] == f"**Change:** {change}."  # no baseline run: the data's change alone
    assert json.loads((report_dir / "metrics.json").read_text())["dataset_change"] == change
    assert run_cli("report", report_dir, "--print-summary").stdout == run.stdout  # kept for later renders

    before = (report_dir / "summary.md").read_text()
    bad = run_cli("report", report_dir, "--audit", tmp_path / "main.csv")
    assert bad.exit_code == 2 and f"audit {tmp_path / 'main.csv'} does not exist" in " ".join(bad.stderr.split())
    assert (report_dir / "summary.md").read_text() == before


def _train_with_gate(flowers_sample: Path, bottleneck_dir: Path, output_dir: Path, *gate: str | Path) -> CliRun:
    return run_cli(
        "train", flowers_sample, "--bottleneck-dir", bottleneck_dir, "--output-dir", output_dir,
        "--how-many-training-steps", "300", "--random-seed", "7", *gate,
    )  # fmt: skip


def test_train_gate_fails_after_writing_every_output(
    flowers_sample: Path, bottleneck_dir: Path, tmp_path: Path
) -> None:
    run = _train_with_gate(flowers_sample, bottleneck_dir, tmp_path, "--min-accuracy", "0.999")
    assert run.exit_code == 1
    (line,) = [line for line in run.stderr.splitlines() if line.startswith("FAILED")]
    assert "below --min-accuracy 99.9%" in line
    assert (tmp_path / "saved_model" / "saved_model.pb").is_file()
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["gate"]["failures"] and metrics["gate"]["min_accuracy"] == 0.999
    assert "**Gate:** FAILED: accuracy" in (tmp_path / "report" / "summary.md").read_text()
    page = _Page.of(tmp_path / "report" / "report.html")
    banner = f"retrain-ci report FAILED accuracy {metrics['test_accuracy']:.1%} is below --min-accuracy 99.9%"
    assert page.text.startswith(banner) and FRACTION.findall(page.text) == []

    passing = _train_with_gate(flowers_sample, bottleneck_dir, tmp_path / "pass", "--min-accuracy", "0.5")
    assert passing.exit_code == 0 and "Gate: passed" in passing.stdout
    banner = "retrain-ci report PASSED every condition asked is met: --min-accuracy 50.0%"
    assert _Page.of(tmp_path / "pass" / "report" / "report.html").text.startswith(banner)


def test_train_gate_against_a_baseline(flowers_sample: Path, bottleneck_dir: Path, tmp_path: Path) -> None:
    first = _train_with_gate(flowers_sample, bottleneck_dir, tmp_path / "main")
    accuracy = json.loads((tmp_path / "main" / "report" / "metrics.json").read_text())["test_accuracy"]
    better = tmp_path / "better_metrics.json"
    better.write_text(json.dumps({"test_accuracy": accuracy + 0.05}))
    assert first.exit_code == 0
    regressed = _train_with_gate(flowers_sample, bottleneck_dir, tmp_path / "pr", "--baseline", better)
    assert regressed.exit_code == 1 and "from the baseline's" in regressed.stderr
    tolerated = _train_with_gate(
        flowers_sample, bottleneck_dir, tmp_path / "pr", "--baseline", better, "--max-regression", "0.1"
    )
    assert tolerated.exit_code == 0
    missing = _train_with_gate(flowers_sample, bottleneck_dir, tmp_path / "pr", "--baseline", tmp_path / "nope.json")
    assert missing.exit_code == 2 and "cannot read the baseline metrics" in missing.stderr


def test_evaluate_takes_the_same_gate_and_writes_a_report(
    trained_run: CliRun, flowers_sample: Path, tmp_path: Path
) -> None:
    # Sunflowers filed as daisies: the daisy class's recall collapses and the per-class gate must catch it.
    golden = copy_dataset(
        tmp_path / "golden",
        {"daisy": sample_photos(flowers_sample, "sunflowers", 6), "tulips": sample_photos(flowers_sample, "tulips", 6)},
    )
    model = trained_run.output_dir / "saved_model"
    run = run_cli("evaluate", model, golden, "--min-class-recall", "0.5", "--report-dir", tmp_path / "report")
    assert run.exit_code == 1 and "recall below --min-class-recall 50.0%: daisy" in run.stderr
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["test_images"] == 12 and set(metrics["per_class"]) == {
        "daisy", "dandelion", "roses", "sunflowers", "tulips",
    }  # fmt: skip
    assert run_cli("evaluate", model, golden, "--min-class-recall", "0").exit_code == 0


def test_gate_rules() -> None:
    recall, scores = {"a": 0.95, "b": 0.7}, GateScores(0.9, 100)
    assert judge(scores, recall, GateSettings()).failures == ()
    assert judge(scores, recall, GateSettings(min_accuracy=0.9)).failures == ()
    (failure,) = judge(scores, recall, GateSettings(min_class_recall=0.8)).failures
    assert "b 70.0%" in failure and "a " not in failure.split(": ", 1)[1]
    assert judge(scores, recall, GateSettings(baseline_accuracy=0.92, max_regression=0.02)).failures == ()
    assert len(judge(scores, recall, GateSettings(baseline_accuracy=0.93, max_regression=0.02)).failures) == 1
    assert judge(scores, recall, GateSettings(min_test_images=100)).failures == ()
    (failure,) = judge(scores, recall, GateSettings(min_test_images=101)).failures
    assert failure.startswith("100 test images are fewer than --min-test-images 101")


def _wilson(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval from its formula, written out here to check the library's."""
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return centre - half, centre + half


@pytest.mark.parametrize(
    ("successes", "trials", "expected"),
    [(25, 30, (0.6644, 0.9266)), (0, 10, (0.0, 0.2775)), (10, 10, (0.7225, 1.0)), (41, 49, (0.7096, 0.9149))],
)
def test_the_interval_is_wilsons(successes: int, trials: int, expected: tuple[float, float]) -> None:
    interval = wilson_interval(successes, trials)
    assert interval == pytest.approx(_wilson(successes, trials), abs=1e-9)
    assert interval == pytest.approx(expected, abs=5e-5)
    assert wilson_interval(0, 0) is None


def test_the_interval_is_shown_beside_accuracy_and_recall(report_dir: Path, trained_run: CliRun) -> None:
    metrics = json.loads((report_dir / "metrics.json").read_text())
    images = metrics["test_images"]
    low, high = _wilson(round(metrics["test_accuracy"] * images), images)
    assert metrics["test_accuracy_interval"] == pytest.approx([low, high])
    shown = f"{metrics['test_accuracy']:.1%} (95% interval {low:.1%}-{high:.1%}) on {images} images".replace(
        "%-", "-", 1
    )
    assert f"Test accuracy: {shown}" in trained_run.stdout
    assert f"**Test accuracy:** {shown}" in (report_dir / "summary.md").read_text()
    banner = f"{metrics['test_accuracy']:.1%} test accuracy 95% interval {low:.1%}-{high:.1%}".replace("%-", "-", 1)
    assert banner in _Page.of(report_dir / "report.html").text
    for row in metrics["per_class"].values():
        assert row["recall_interval"] == pytest.approx(_wilson(round(row["recall"] * row["support"]), row["support"]))


def test_a_small_test_set_warns_and_min_test_images_gates_it(
    trained_run: CliRun, flowers_sample: Path, tmp_path: Path
) -> None:
    golden = copy_dataset(tmp_path / "golden", {c: sample_photos(flowers_sample, c, 6) for c in ("daisy", "tulips")})
    model = trained_run.output_dir / "saved_model"
    scored = json.loads(run_cli("evaluate", model, golden, "--format", "json").stdout)
    accuracy, (low, high) = scored["accuracy"], _wilson(round(scored["accuracy"] * 12), 12)
    assert scored["accuracy_interval"] == pytest.approx([low, high])
    threshold = round(accuracy - 0.05, 2)  # inside the interval: 12 photos cannot tell the two apart

    run = run_cli("evaluate", model, golden, "--min-accuracy", threshold, "--report-dir", tmp_path / "report")
    assert run.exit_code == 0, run.stderr
    warning = (
        f"warning: 12 test images: accuracy {accuracy:.1%} (95% interval {low:.1%}-{high:.1%}) cannot tell "
        f"--min-accuracy {threshold:.1%} from it: the threshold lies inside the interval, so the verdict could differ "
        "on another 12 photos"
    ).replace("%-", "-", 1)
    assert warning in run.stderr.splitlines()
    assert f"**Warning:** {warning.removeprefix('warning: ')}." in (tmp_path / "report" / "summary.md").read_text()
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["gate"]["warnings"] == [
        warning.removeprefix("warning: ")
    ]
    assert "warning" not in run_cli("evaluate", model, golden, "--min-accuracy", low - 0.01).stderr

    too_few = run_cli("evaluate", model, golden, "--min-test-images", "13")
    assert too_few.exit_code == 1
    (failure,) = [line for line in too_few.stderr.splitlines() if line.startswith("FAILED")]
    assert (
        failure
        == "FAILED: 12 test images are fewer than --min-test-images 13: too few to tell whether the model meets the bar"
    )
    assert run_cli("evaluate", model, golden, "--min-test-images", "12").exit_code == 0


def test_top5_accuracy_is_reported_beyond_five_classes(tmp_path: Path) -> None:
    import numpy as np

    from retrain.core.assessment import assess
    from retrain.core.results import Evaluation
    from retrain.core.run_json import run_report_document
    from retrain.core.run_report import RunFacts

    labels = tuple(f"class{i}" for i in range(7))
    truths = np.array([0, 1, 2, 3])
    probabilities = np.full((4, 7), 0.01)
    probabilities[0, 0] = 0.9  # right
    probabilities[1, [0, 2, 3, 4, 1]] = [0.5, 0.4, 0.3, 0.2, 0.1]  # true class ranked 5th: in the top 5
    probabilities[2, [0, 1, 3, 4, 5, 2]] = [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]  # true class ranked 6th: not
    probabilities[3, 3] = 0.9  # right
    evaluation = Evaluation(labels, [tmp_path / f"{i}.jpg" for i in range(4)], truths, probabilities, [])
    metrics = run_report_document(assess(evaluation, RunFacts(dataset=""), GateSettings(), None))
    assert metrics["test_accuracy"] == 0.5
    assert metrics["top5_accuracy"] == 0.75


def test_a_class_without_test_images_is_not_reported_as_zero_recall(tmp_path: Path) -> None:
    import numpy as np

    from retrain.core.assessment import assess
    from retrain.core.results import Evaluation
    from retrain.core.run_report import RunFacts
    from retrain.reports import write_report

    probabilities = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    evaluation = Evaluation(
        ("a", "b", "c"), [tmp_path / f"{i}.jpg" for i in range(3)], np.array([0, 1, 1]), probabilities, []
    )
    report = write_report(
        tmp_path / "report", evaluation, assess(evaluation, RunFacts(dataset=""), GateSettings(), None)
    )
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "| c | n/a | n/a | n/a | n/a | 0 |" in summary  # precision, recall, its interval, F1
    assert report.run.worst_classes() == [("b", 0.5), ("a", 1.0)]
