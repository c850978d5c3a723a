"""Links in a dataset: followed when they stay inside it, else skipped and reported by `train` and by `check`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from retrain.core.dataset import list_dataset
from retrain.core.settings import SplitSettings
from tests.conftest import copy_dataset, run_cli, sample_photos

SPLIT = ("--testing-percentage", "20", "--validation-percentage", "20")


@pytest.fixture(scope="module")
def linked(flowers_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three real classes and every kind of link: inside (followed), dangling, looping, outside (skipped)."""
    base = tmp_path_factory.mktemp("links")
    root = copy_dataset(
        base / "photos", {label: sample_photos(flowers_sample, label, 12) for label in ("daisy", "roses", "tulips")}
    )
    outside = copy_dataset(base / "elsewhere", {"extra": sample_photos(flowers_sample, "dandelion", 3)})
    (root / "sunflowers").symlink_to("/nonexistent/sunflowers")  # a whole class that is not there
    (root / "daisy" / "dangling.jpg").symlink_to("/nonexistent/photo.jpg")
    (root / "daisy" / "loop.jpg").symlink_to("loop.jpg")
    (root / "roses" / "up").symlink_to("..")  # would list the dataset inside its own class, forever
    (root / "roses" / "elsewhere").symlink_to(outside / "extra")
    (root / "tulips" / "inside.jpg").symlink_to(os.path.relpath(sample_link_target(root), root / "tulips"))
    (root / "tulips" / "more").symlink_to("../daisy")  # a folder inside the dataset: followed
    return root


def sample_link_target(root: Path) -> Path:
    return sorted((root / "daisy").glob("*.jpg"))[0]


SKIPPED = {
    "sunflowers": "/nonexistent/sunflowers, which does not exist (a dangling link)",
    "daisy/dangling.jpg": "/nonexistent/photo.jpg, which does not exist (a dangling link)",
    "daisy/loop.jpg": "loop.jpg, which leads back to a link (a link loop)",
    "roses/up": ".., a folder this class already lists (a link loop)",
    "roses/elsewhere": "outside the dataset folder",
    # tulips/more is daisy, seen again through a followed link: its bad links are reported where the scan met them
    "tulips/more/dangling.jpg": "/nonexistent/photo.jpg, which does not exist (a dangling link)",
    "tulips/more/loop.jpg": "loop.jpg, which leads back to a link (a link loop)",
}


def test_links_inside_the_dataset_are_followed_and_the_others_listed_with_why(linked: Path) -> None:
    dataset = list_dataset(linked, SplitSettings(20, 20))
    assert dataset.labels == ("daisy", "roses", "tulips")
    tulips = [image.path.relative_to(linked).as_posix() for image in dataset.images if image.label_index == 2]
    assert "tulips/inside.jpg" in tulips and sum(path.startswith("tulips/more/") for path in tulips) == 12
    skipped = {path.relative_to(linked).as_posix(): reason for path, reason in dataset.skipped_links}
    assert skipped.keys() == SKIPPED.keys()
    for path, why in SKIPPED.items():
        assert why in skipped[path], path


def test_train_warns_about_every_skipped_link(linked: Path, bottleneck_dir: Path, tmp_path: Path) -> None:
    run = run_cli(
        "train", linked, "--bottleneck-dir", bottleneck_dir, "--output-dir", tmp_path / "out",
        "--how-many-training-steps", "5", *SPLIT,
    )  # fmt: skip
    assert run.exit_code == 0, run.stdout + run.stderr
    for path, why in SKIPPED.items():
        assert f"warning: skipped link {linked / path}: it points to " in run.stderr
        assert why in run.stderr
    assert "in 3 classes" in run.stdout

    # evaluate lists a labeled folder as training does: the same links skipped, each said
    evaluated = run_cli("evaluate", tmp_path / "out" / "saved_model", linked, "--format", "json")
    assert evaluated.exit_code == 0, evaluated.stdout + evaluated.stderr
    skipped = json.loads(evaluated.stdout)["skipped"]
    assert {Path(path).relative_to(linked).as_posix() for path in skipped} == SKIPPED.keys()
    for path, why in SKIPPED.items():
        assert f"warning: skipped unreadable image {linked / path}: a link not followed: it points to " in (
            evaluated.stderr
        )
        assert why in evaluated.stderr


def test_check_reports_every_skipped_link_with_where_it_points(linked: Path, tmp_path: Path) -> None:
    report = tmp_path / "audit.json"
    run = run_cli("check", linked, "--only", "skipped_link", "--format", "json", "--output", report)
    assert run.exit_code == 1, run.stdout + run.stderr
    findings = {finding["paths"][0]: finding for finding in json.loads(report.read_text())["findings"]}
    assert findings.keys() == SKIPPED.keys()
    for path, why in SKIPPED.items():
        assert findings[path]["severity"] == "error"
        assert why in findings[path]["message"] and "fix or remove the link" in findings[path]["message"]
