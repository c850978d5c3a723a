"""The audit catches what CleanVision, imagededup and cleanlab catch: blown-out photos, near-duplicates that are not
pixel-similar, and photos unlike the rest of their class (issue 18)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from datacheck.settings import AuditSettings
from tests.conftest import copy_dataset, run_cli, sample_photos
from tests.defects import EDITS, brightened, edited, leaked_edits, screenshot

# The checks that compare bottlenecks; outlier needs them, so the audit computes them.
WITH_BOTTLENECKS = ("--only", "near_duplicates,split_leakage,outlier")


def _findings(dataset: Path, tmp_path: Path, *options: str | Path) -> list[dict]:
    report = tmp_path / "report.json"
    run = run_cli("check", dataset, "--format", "json", "--output", report, "--fail-on", "never", *options)
    assert run.exit_code == 0, run.stdout + run.stderr
    return json.loads(report.read_text())["findings"]


def _flagged(findings: list[dict], check: str) -> set[str]:
    return {path for finding in findings if finding["check"] == check for path in finding["paths"]}


def test_brightened_photos_are_overexposed_where_light_says_nothing(flowers_sample: Path, tmp_path: Path) -> None:
    """Daisies brightened 3x and 6x: their subjects clipped, but in all but one the darkest parts stay dark, so only
    `overexposed` sees them. Of the originals none is: a daisy on a pure white background is a studio shot."""
    daisies = sorted((flowers_sample / "daisy").glob("*.jpg"))
    roses = sample_photos(flowers_sample, "roses", 20)
    root = copy_dataset(tmp_path / "photos", {"daisy": daisies[:20], "roses": roses})
    planted = [
        edited(daisies[index], root / "daisy" / f"{daisies[index].stem}-x{factor}.jpg", brightened(factor), quality=90)
        for index, factor in ((27, 6), (32, 6), (36, 6), (27, 3), (36, 3))
    ]
    assert (root / WHITE_BACKGROUND).exists()
    findings = _findings(root, tmp_path, "--only", "overexposed,light", "--property-cache", tmp_path / "cache")
    assert _flagged(findings, "overexposed") == {f"daisy/{path.name}" for path in planted}
    assert _flagged(findings, "light") == {f"daisy/{planted[0].name}"}  # the one blown to white all over
    subject = [f["details"]["subject_clipped"] for f in findings if f["check"] == "overexposed"]
    assert min(subject) >= AuditSettings().overexposed_clipped


# A daisy on a pure white studio background (58% of the picture clipped) and tulips on white (39%).
WHITE_BACKGROUND = "daisy/11642632_1e7627a2cc.jpg"
TULIPS_ON_WHITE = "tulips/112428665_d8f3632f36_n.jpg"
# Flowers of flowers-sample over a dark background (tulips, a rose on soil) and over a light one (a daisy in sunlit
# grass), with how much they are brightened: enough to blow the flower out, by eye.
OVER_DARK = (("tulips/13529687904_3d60abb479_n.jpg", 6), ("roses/14573732424_1bb91e2e42_n.jpg", 3))
OVER_LIGHT = (("daisy/11124324295_503f3a0804.jpg", 3),)


def test_a_blown_subject_is_overexposed_on_a_dark_or_light_background(flowers_sample: Path, tmp_path: Path) -> None:
    """Brightened until the flower is blown to white or a flat colour: flagged whether the background stays dark
    (under half the picture clipped, which the whole-picture rule missed) or is blown too; the studio shots on white
    beside them are not."""
    photos = {label: sample_photos(flowers_sample, label, 8) for label in ("daisy", "roses", "tulips")}
    photos["tulips"].append(flowers_sample / TULIPS_ON_WHITE)
    photos["daisy"].append(flowers_sample / WHITE_BACKGROUND)
    root = copy_dataset(tmp_path / "photos", photos)
    planted = {
        path: edited(flowers_sample / path, root / f"{path[:-4]}-x{factor}.jpg", brightened(factor), quality=90)
        .relative_to(root)
        .as_posix()
        for path, factor in OVER_DARK + OVER_LIGHT
    }
    findings = _findings(root, tmp_path, "--only", "overexposed", "--property-cache", tmp_path / "cache")
    found = {f["paths"][0]: f for f in findings}
    assert set(found) == set(planted.values())
    assert all(found[planted[path]]["details"]["clipped"] < 0.5 for path, _ in OVER_DARK)
    message = found[planted[OVER_LIGHT[0][0]]]["message"]
    assert message.startswith("overexposed: ") and "of the subject is clipped" in message
    assert all(type(value) is float for f in findings for value in f["details"].values())


@pytest.fixture(scope="module")
def leaky(flowers_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[str, str]]]:
    """The 200-photo sample with a crop, a mirror image, a colour edit and a rotation of four test photos placed in
    training, and a screenshot among the roses."""
    root = tmp_path_factory.mktemp("leaky") / "photos"
    shutil.copytree(flowers_sample, root)
    screenshot().save(root / "roses" / "screenshot.jpg", quality=90)
    return root, leaked_edits(root)


@pytest.fixture(scope="module")
def leaky_audit(leaky, bottleneck_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    root, _ = leaky
    report = tmp_path_factory.mktemp("leaky-report")
    return _findings(root, report, *WITH_BOTTLENECKS, "--bottleneck-dir", bottleneck_dir)


# The colour edit keeps the perceptual hash (0 bits apart); the other edits move it 10 to 32 bits.
EXPECTED_SIGNALS = {"crop": "embedding", "mirror": "embedding", "colour": "both", "rotation": "embedding"}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_edited_copies_of_test_photos_in_training_are_split_leakage(edit: str, leaky, leaky_audit) -> None:
    """Crops, mirror images, colour edits and small rotations are far apart by perceptual hash; the bottlenecks find
    them, and the finding says so."""
    _, planted = leaky
    pair = set(planted[edit])
    (leak,) = [f for f in leaky_audit if f["check"] == "split_leakage" and pair <= set(f["paths"])]
    (listed,) = [p for p in leak["details"]["pairs"] if set(p["paths"]) == pair]
    assert listed["signal"] == EXPECTED_SIGNALS[edit] and listed["similarity"] >= 0.75
    assert (listed["hash_bits"] <= 4) == (listed["signal"] == "both")
    assert any(f["check"] == "near_duplicates" and pair <= set(f["paths"]) for f in leaky_audit)


def test_duplicate_checks_alone_run_on_the_hash_without_tensorflow(leaky, tmp_path: Path) -> None:
    """Selected without a check that needs bottlenecks, the duplicate checks use the perceptual hash only."""
    root, _ = leaky
    code = (
        "import sys; from typer.testing import CliRunner; from retrain.cli import app; "
        f"r = CliRunner().invoke(app, ['check', {str(root)!r}, '--only', 'near_duplicates,split_leakage', "
        "'--no-bottlenecks', "
        f"'--property-cache', {str(tmp_path / 'cache')!r}, '--fail-on', 'never']); "
        "print(r.exit_code, 'tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split()[-2:] == ["0", "False"], result.stdout + result.stderr


def test_a_screenshot_among_flowers_is_an_outlier(leaky_audit) -> None:
    """Unlike any photo of its class or of any other: the most outlying photo of the roses, and flagged."""
    outliers = {f["paths"][0]: f["details"] for f in leaky_audit if f["check"] == "outlier"}
    assert "roses/screenshot.jpg" in outliers, outliers
    roses = {path: details["score"] for path, details in outliers.items() if path.startswith("roses/")}
    assert max(roses, key=roses.get) == "roses/screenshot.jpg"
