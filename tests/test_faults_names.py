"""Hostile names: a dataset whose file and folder names try to inject into every output, and what each medium shows."""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from markdown_it import MarkdownIt

from retrain.core.assessment import assess
from retrain.core.dataset import label_name, split_for
from retrain.core.display import printable
from retrain.core.results import Evaluation
from retrain.core.run_report import RunFacts
from retrain.core.settings import GateSettings
from retrain.reports import rerender, write_report
from tests.conftest import CliRun, copy_dataset, run_cli, sample_photos

INJECTION = "::error file=README.md::INJECTED"
ESC_OSC = "esc\x1b[31mred\x1b]8;;https:evil.example\x07link"
BACKTICK = "tick` <img src=x onerror=alert(1)> `"
# Copies of one daisy photo filed under "true" (sunflowers) in the test split: misclassified, so printed.
HOSTILE_STEMS = (f"x\n{INJECTION} annotation", ESC_OSC, BACKTICK, "=cmd|' calc'!A0", "names\n## All checks passed ✅\n")
CORRUPT = f"bad\n{INJECTION} skip.jpg"  # not a JPEG: training skips it with a warning
UNDECODABLE = b"caf\xe9-latin1.jpg"  # Latin-1, not UTF-8
CLASSES = {"0": "roses", "NaN": "daisy", "None": "dandelion", "true": "sunflowers", "тюльпаны": "tulips"}
SPLIT = ("--testing-percentage", "25", "--validation-percentage", "15")


def _in_test_split(stem: str) -> str:
    """The first ``stem N.jpg`` that the split puts in the test set."""
    return next(name for n in range(100) if split_for(name := f"{stem} {n}.jpg", 25, 15) == "testing")


@pytest.fixture(scope="module")
def hostile(flowers_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile") / "photos"
    copy_dataset(root, {folder: sample_photos(flowers_sample, species, 8) for folder, species in CLASSES.items()})
    copy_dataset(root, {"café": sample_photos(flowers_sample, "dandelion", 16)[8:]})
    daisy = sorted((flowers_sample / "daisy").glob("*.jpg"))[-1]
    for stem in HOSTILE_STEMS:
        shutil.copy(daisy, root / "true" / _in_test_split(stem))
    (root / "true" / CORRUPT).write_text("not a JPEG")
    with open(os.path.join(os.fsencode(root / "0"), UNDECODABLE), "wb") as f:
        f.write(daisy.read_bytes())
    return root


@pytest.fixture(scope="module")
def hostile_run(hostile: Path, bottleneck_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    output_dir = tmp_path_factory.mktemp("hostile-run")
    return run_cli(
        "train", hostile, "--bottleneck-dir", bottleneck_dir, "--output-dir", output_dir,
        "--how-many-training-steps", "20", "--learning-rate", "0.5", "--random-seed", "3",
        "--print-misclassified-test-images", *SPLIT,
    )  # fmt: skip


@pytest.fixture(scope="module")
def with_bad_folders(hostile: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hostile dataset plus a class folder named only with punctuation."""
    root = tmp_path_factory.mktemp("bang") / "photos"
    shutil.copytree(hostile, root)
    shutil.copytree(root / "тюльпаны", root / "!!!")
    return root


def _no_command_and_no_escape(text: str) -> None:
    """No line a runner would run as a workflow command, no raw terminal escape or undecodable byte."""
    for line in text.splitlines():
        assert not line.lstrip().startswith("::"), line
    assert "\x1b" not in text and "\x07" not in text
    text.encode("utf-8")  # no surrogate-escaped byte


def test_labels_keep_letters_of_every_script() -> None:
    assert label_name("тюльпаны") == "тюльпаны"
    assert label_name("Café") == label_name(unicodedata.normalize("NFD", "Café")) == "café"
    assert label_name("Sun--Flowers (2019)") == "sun flowers 2019"
    assert [label_name(name) for name in ("0", "NaN", "None", "true")] == ["0", "nan", "none", "true"]
    assert label_name("!!!") == ""


def test_a_name_that_is_not_utf8_has_a_split_and_a_printable_form() -> None:
    name = os.fsdecode(UNDECODABLE)
    assert split_for(name, 25, 15) in ("training", "validation", "testing")
    assert printable(name) == "caf\\xe9-latin1.jpg"
    shown = "a\\nb\\r\\tesc\\x1b[31mred\\x1b]8;;https:evil.example\\x07link\\u202eé"
    assert printable(f"a\nb\r\t{ESC_OSC}\u202eé") == shown


def test_train_refuses_a_folder_whose_label_would_be_empty(with_bad_folders: Path, tmp_path: Path) -> None:
    run = run_cli("train", with_bad_folders, "--output-dir", tmp_path / "out")
    assert run.exit_code == 2, run.stdout + run.stderr
    assert run.stderr.strip().startswith("error: class folder ") and "!!!" in run.stderr and "rename it" in run.stderr
    assert not (tmp_path / "out").exists()


def test_train_refuses_a_class_folder_whose_name_is_not_utf8(flowers_sample: Path, tmp_path: Path) -> None:
    root = copy_dataset(tmp_path / "photos", {c: sample_photos(flowers_sample, c, 3) for c in ("daisy", "roses")})
    os.rename(os.fsencode(root / "roses"), os.fsencode(root) + b"/roses\xff")
    run = run_cli("train", root, "--output-dir", tmp_path / "out")
    assert run.exit_code == 2, run.stdout + run.stderr
    assert "roses\\xff is not valid UTF-8" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    run.stderr.encode("utf-8")


def test_train_terminal_shows_names_escaped(hostile_run: CliRun) -> None:
    assert hostile_run.exit_code == 0, hostile_run.stdout + hostile_run.stderr
    _no_command_and_no_escape(hostile_run.stdout + hostile_run.stderr)
    warnings = [line for line in hostile_run.stderr.splitlines() if line.startswith("warning: skipped")]
    assert len(warnings) == 2, hostile_run.stderr
    assert any(f"bad\\n{INJECTION} skip.jpg" in line for line in warnings)
    assert any("caf\\xe9-latin1.jpg: its name is not valid UTF-8" in line for line in warnings)
    listed = hostile_run.stdout.split("=== MISCLASSIFIED TEST IMAGES ===")[1].split("Final test accuracy")[0]
    for stem in HOSTILE_STEMS:
        assert printable(_in_test_split(stem)) + "  true -> " in listed, listed
    labels = (hostile_run.output_dir / "output_labels.txt").read_text(encoding="utf-8").splitlines()
    assert labels == ["0", "nan", "none", "café", "true", "тюльпаны"]  # folders sorted by name, as the tutorial


def test_report_html_escapes_names(hostile_run: CliRun) -> None:
    page = (hostile_run.output_dir / "report" / "report.html").read_text(encoding="utf-8")
    assert "\x1b" not in page and "\x07" not in page
    assert "<img src=x" not in page and "tick` &lt;img src=x onerror=alert(1)&gt; `" in page
    assert "esc\\x1b[31mred\\x1b]8;;https:evil.example\\x07link" in page
    assert "x\\n::error file=README.md::INJECTED annotation" in page


def test_csv_files_keep_every_label_as_text(hostile_run: CliRun) -> None:
    report = hostile_run.output_dir / "report"
    for name in ("predictions.csv", "misclassified.csv"):
        with open(report / name, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert {row["true_label"] for row in rows} <= {"0", "café", "nan", "none", "true", "тюльпаны"}
        paths = {Path(row["path"]).name for row in rows}
        assert {_in_test_split(stem) for stem in HOSTILE_STEMS} <= paths  # raw names: identities, not display


def test_report_renders_again_with_numeric_and_na_class_names(hostile_run: CliRun) -> None:
    report = hostile_run.output_dir / "report"
    before = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    run = run_cli("report", hostile_run.output_dir)
    assert run.exit_code == 0, run.stdout + run.stderr
    after = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    assert after["per_class"] == before["per_class"] and after["test_accuracy"] == before["test_accuracy"]
    summary = run_cli("report", hostile_run.output_dir, "--print-summary").stdout
    for label in ("0", "nan", "none", "true"):
        assert f"\n| {label} | " in summary


def test_csv_cells_cannot_run_as_formulas(tmp_path: Path) -> None:
    labels = ("=cmd|' /C calc'!A0", "+sum", "@now", "-1")
    evaluation = Evaluation(labels, [Path(f"/p/{i}.jpg") for i in range(4)], np.arange(4), np.eye(4)[[1, 0, 3, 2]], [])
    write_report(tmp_path / "report", evaluation, assess(evaluation, RunFacts(dataset=""), GateSettings(), None))
    for name in ("predictions.csv", "misclassified.csv", "confusion_matrix.csv"):
        with open(tmp_path / "report" / name, newline="", encoding="utf-8") as f:
            cells = [cell for row in csv.reader(f) for cell in row]
        assert not [cell for cell in cells if cell[:1] in ("=", "+", "@", "-", "\t", "\r")], name
        assert "'=cmd|' /C calc'!A0" in cells
    again = rerender(tmp_path / "report")
    assert tuple(again.run.per_class) == labels and again.run.test_accuracy == 0.0


CHECKS = ("--only", "corrupt_image,undecodable_name,empty_label,exact_duplicates,label_clash")


def test_check_table_shows_names_escaped(with_bad_folders: Path) -> None:
    run = run_cli("check", with_bad_folders, *CHECKS)
    assert run.exit_code == 1, run.stdout + run.stderr
    _no_command_and_no_escape(run.stdout)
    for check in ("corrupt_image", "undecodable_name", "empty_label", "exact_duplicates"):
        assert check in run.stdout
    assert "0/caf\\xe9-latin1." in run.stdout and "label_clash" not in run.stdout  # the path column folds


def test_check_markdown_cannot_be_broken_by_names(with_bad_folders: Path) -> None:
    run = run_cli("check", with_bad_folders, *CHECKS, "--format", "markdown")
    _no_command_and_no_escape(run.stdout)
    html = MarkdownIt("commonmark").enable("table").render(run.stdout)
    assert "<img" not in html
    headings = [line for line in html.splitlines() if line.startswith(("<h1", "<h2", "<h3"))]
    assert len(headings) == 5, headings  # the title and one per check with findings (no label_clash)
    assert not any("All checks passed" in heading for heading in headings)
    assert f"<code>true/{_in_test_split(BACKTICK).replace('<', '&lt;').replace('>', '&gt;')}</code>" in html
    assert "<code>0/caf\\xe9-latin1.jpg</code>" in html
    assert "<code>true/x\\n::error file=README.md::INJECTED annotation" in html


def test_check_github_annotations_one_line_each(with_bad_folders: Path) -> None:
    run = run_cli("check", with_bad_folders, *CHECKS, "--format", "github")
    lines = run.stdout.splitlines()
    findings = json.loads(run_cli("check", with_bad_folders, *CHECKS, "--format", "json").stdout)["findings"]
    assert len(lines) == len(findings) >= 4
    assert all(line.startswith(("::error file=", "::warning file=")) for line in lines)
    for line in lines:  # parsed as the runner parses them: properties up to the next "::", split on "," and "="
        properties = dict(item.split("=", 1) for item in line.split(" ", 1)[1].split("::")[0].split(","))
        assert set(properties) == {"file", "title"}
        assert properties["file"].replace("%3A", ":").startswith(f"{with_bad_folders}/"), line
    assert "\x1b" not in run.stdout


def test_check_json_keeps_paths_raw(with_bad_folders: Path) -> None:
    run = run_cli("check", with_bad_folders, *CHECKS, "--format", "json")
    document = json.loads(run.stdout)
    paths = {path for finding in document["findings"] for path in finding["paths"]}
    assert "true/" + _in_test_split(f"x\n{INJECTION} annotation") in paths
    assert "true/" + _in_test_split(ESC_OSC) in paths
    assert "true/" + CORRUPT in paths and "!!!" in paths
    (finding,) = [f for f in document["findings"] if f["paths"] == ["0/caf\\xe9-latin1.jpg"]]  # valid UTF-8
    (raw,) = [base64.b64decode(name) for name in finding["paths_bytes"]]
    assert raw == b"0/" + UNDECODABLE
    assert (with_bad_folders / os.fsdecode(raw)).is_file()  # an identity: its bytes name the file
