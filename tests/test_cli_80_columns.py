"""In an 80-column terminal, label and evaluate name the image folder once and show every image under it whole."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from retrain.cli import app
from tests.conftest import CliRun


def _at_80_columns(*args: str | Path) -> list[str]:
    result = CliRunner().invoke(app, [str(arg) for arg in args], env={"COLUMNS": "80"})
    assert result.exit_code in (0, 1), result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    return lines


def _first_column(lines: list[str]) -> str:
    """The first column of a table's rows, its folded pieces joined back together."""
    return "".join(line.split("│")[1].strip() for line in lines if line.startswith("│"))


def test_label_names_the_folder_once_and_each_photo_in_it(trained_run: CliRun, flowers_sample: Path) -> None:
    roses = flowers_sample / "roses"
    lines = _at_80_columns("label", "--model", trained_run.output_dir / "saved_model", roses)
    assert lines[0] == f"Images in {roses}"
    photos = sorted(path.name for path in roses.glob("*.jpg"))
    assert _first_column(lines) == "".join(photos)
    assert len(lines) <= 3 * len(photos) + 5  # 7 lines a photo when every row repeated the folder


def test_evaluate_lists_misclassified_photos_under_the_folder(trained_run: CliRun, flowers_sample: Path) -> None:
    lines = _at_80_columns("evaluate", trained_run.output_dir / "saved_model", flowers_sample)
    title = next(i for i, line in enumerate(lines) if "Misclassified in" in line)
    assert f"Misclassified in {flowers_sample}, most confident first" in " ".join(x.strip() for x in lines[title:])
    wrong = lines[title : next(i for i, line in enumerate(lines) if line.startswith("Accuracy = "))]
    shown = _first_column(wrong)
    labels = ("daisy/", "dandelion/", "roses/", "sunflowers/", "tulips/")
    assert shown.startswith(labels) and str(flowers_sample) not in shown
