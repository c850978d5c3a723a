"""`retrain-ci check DIR`: a user audits a dataset and sees every planted defect, and nothing alarming on clean data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from datacheck.properties import image_properties
from retrain.core.dataset import scan_folder
from retrain.core.settings import SplitSettings
from tests.conftest import DefectiveDataset, copy_dataset, run_cli, sample_photos
from tests.defects import edited, tinted


def _check(dataset: Path, bottleneck_dir: Path, tmp_path: Path, *options: str):
    """Run the audit with a JSON report; return the run and the parsed report."""
    report = tmp_path / "report.json"
    run = run_cli(
        "check", dataset, "--bottleneck-dir", bottleneck_dir, "--format", "json", "--output", report, *options
    )
    assert "Traceback" not in run.stdout + run.stderr
    return run, json.loads(report.read_text()) if report.exists() else None


def _reported(report: dict, check: str) -> set[str]:
    return {path for finding in report["findings"] if finding["check"] == check for path in finding["paths"]}


@pytest.fixture(scope="module")
def defective_audit(defective_dataset: DefectiveDataset, bottleneck_dir: Path, tmp_path_factory) -> tuple:
    return _check(defective_dataset.root, bottleneck_dir, tmp_path_factory.mktemp("defective-report"))


@pytest.fixture(scope="module")
def clean_audit(flowers_sample: Path, bottleneck_dir: Path, tmp_path_factory) -> tuple:
    return _check(flowers_sample, bottleneck_dir, tmp_path_factory.mktemp("clean-report"))


def test_every_planted_defect_is_reported(defective_dataset: DefectiveDataset, defective_audit) -> None:
    run, report = defective_audit
    missed = {
        check: sorted(set(paths) - _reported(report, check))
        for check, paths in defective_dataset.planted.items()
        if set(paths) - _reported(report, check)
    }
    assert missed == {}
    assert run.exit_code == 1  # errors were found and the default gate is --fail-on error


def test_duplicate_groups_are_reported_together(defective_dataset: DefectiveDataset, defective_audit) -> None:
    _, report = defective_audit
    groups = {
        check: [set(f["paths"]) for f in report["findings"] if f["check"] == check]
        for check in report["summary"]["by_check"]
    }
    for check in ("exact_duplicates", "conflicting_labels", "near_duplicates"):
        assert set(defective_dataset.planted[check]) in groups[check], check
    leak = next(
        f
        for f in report["findings"]
        if f["check"] == "split_leakage" and set(f["paths"]) == set(defective_dataset.planted["split_leakage"])
    )
    assert "_nohash_" in leak["message"]
    assert len(set(leak["details"]["splits"].values())) == 2


def test_corrupt_files_are_findings_that_say_what_is_wrong(defective_audit) -> None:
    _, report = defective_audit
    reasons = {f["paths"][0]: f["message"] for f in report["findings"] if f["check"] == "corrupt_image"}
    assert "truncated" in reasons["daisy/truncated.jpg"]
    assert "not an image" in reasons["daisy/actually text.jpg"]
    assert "empty file" in reasons["dandelion/empty.jpg"]
    assert all(f["severity"] == "error" for f in report["findings"] if f["check"] == "corrupt_image")


def test_class_findings_name_the_class_folder(defective_audit) -> None:
    _, report = defective_audit
    tiny = next(f for f in report["findings"] if f["check"] == "too_few_images" and f["paths"] == ["tulips"])
    assert tiny["severity"] == "error" and tiny["details"]["images"] == 6
    empty = next(f for f in report["findings"] if f["check"] == "empty_class")
    assert empty["paths"] == ["lilies"] and empty["severity"] == "error"


def test_valid_but_unusual_files_load_and_pass(defective_dataset: DefectiveDataset, defective_audit) -> None:
    _, report = defective_audit
    flagged = {path for f in report["findings"] if f["severity"] != "info" for path in f["paths"]}
    assert set(defective_dataset.unusual) & flagged == set()
    assert report["summary"]["classes"]["roses"] == 25 + len(defective_dataset.unusual)


def test_json_report_has_the_documented_shape(defective_dataset: DefectiveDataset, defective_audit) -> None:
    _, report = defective_audit
    assert set(report) == {"format", "version", "dataset", "summary", "findings", "manifest"}
    assert report["dataset"] == str(defective_dataset.root)
    assert set(report["summary"]) >= {"images", "classes", "findings", "by_check", "checks_run", "seconds"}
    assert sum(report["summary"]["findings"].values()) == len(report["findings"])
    for finding in report["findings"]:
        assert set(finding) == {"check", "severity", "paths", "message", "details", "fingerprint"}
        assert finding["severity"] in ("error", "warning", "info")
        for path in finding["paths"]:
            assert not Path(path).is_absolute() and (defective_dataset.root / path).exists(), path


def test_clean_sample_raises_no_error(clean_audit) -> None:
    run, report = clean_audit
    assert run.exit_code == 0, run.stderr
    assert [f for f in report["findings"] if f["severity"] == "error"] == []
    assert report["summary"]["images"] == 200
    for check in ("corrupt_image", "exact_duplicates", "conflicting_labels", "shortcut_bias", "dark", "light"):
        assert _reported(report, check) == set(), check
    for check in ("blurry", "low_information", "tiny_image", "odd_aspect_ratio", "suspected_mislabel"):
        assert len(_reported(report, check)) <= 4, check  # under 2% of 200 normal photos


def test_photos_moved_to_the_wrong_class_are_suspected(
    flowers_sample: Path, bottleneck_dir: Path, tmp_path: Path
) -> None:
    dataset = copy_dataset(
        tmp_path / "photos",
        {
            label: sample_photos(flowers_sample, label, 40)
            for label in ("daisy", "dandelion", "roses", "sunflowers", "tulips")
        },
    )
    moves = {"sunflowers": "roses", "daisy": "tulips", "dandelion": "daisy", "roses": "sunflowers"}
    moved = []
    for source, target in moves.items():
        photo = sorted((dataset / source).glob("*.jpg"))[-1]
        moved.append(Path(shutil.move(photo, dataset / target / photo.name)).relative_to(dataset).as_posix())
    # Every suspect, the less sure ones too: on 200 photos, with 32 per class to learn from in each fold, the model is
    # less sure, and the default (the likely ones only, tested on flowers-dev in test_mislabels.py) reports 2 of them.
    run, report = _check(dataset, bottleneck_dir, tmp_path, "--only", "suspected_mislabel", "--suspects", "all")
    suspected = _reported(report, "suspected_mislabel")
    # At least half: with 4 moves among 200 photos, which folds the photos fall in decides 2 or 3 (content-keyed folds
    # find 2, shuffled ones found 3); recall proper is measured on flowers-dev and digits (benchmarks/mislabels.py).
    assert len(set(moved) & suspected) >= 2
    assert len(suspected - set(moved)) <= 6
    first = next(f for f in report["findings"] if f["paths"] == [moved[0]])
    assert first["details"]["given"] == "roses" and first["details"]["likely"] == "sunflowers"


def test_background_that_gives_the_class_away_is_a_shortcut(
    flowers_sample: Path, bottleneck_dir: Path, tmp_path: Path
) -> None:
    dataset = tmp_path / "rooms"
    for label, colour in (("daisy", (40, 60, 220)), ("roses", (40, 200, 60))):
        (dataset / label).mkdir(parents=True)
        for photo in sample_photos(flowers_sample, label, 30):
            edited(photo, dataset / label / photo.name, tinted(colour))
    run, report = _check(dataset, bottleneck_dir, tmp_path, "--only", "shortcut_bias")
    (finding,) = report["findings"]
    assert finding["check"] == "shortcut_bias" and finding["details"]["skill"] > 0.6
    assert sorted(finding["paths"]) == ["daisy", "roses"]


def test_unusual_files_are_read_upright_and_in_colour(defective_dataset: DefectiveDataset) -> None:
    images = image_properties(scan_folder(defective_dataset.root), SplitSettings()).table.set_index("path")
    rotated = images.loc["roses/rotated.jpg"]
    assert rotated["height"] > rotated["width"]  # stored landscape, displayed portrait
    assert images.loc["roses/cmyk.jpg", "mode"] == "CMYK"
    assert images.loc["roses/with alpha.png", "mode"] == "RGBA"
    assert images.loc[defective_dataset.unusual, "error"].isna().all()
    assert images.loc["roses/cmyk.jpg", "colourfulness"] > 0.2  # CMYK converted to RGB, not read as grey
