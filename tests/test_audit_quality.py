"""The audit catches what CleanVision, imagededup and cleanlab catch: blown-out photos, near-duplicates that are not
pixel-similar, and photos unlike the rest of their class (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import copy_dataset, run_cli, sample_photos
from tests.defects import brightened, edited


def _findings(dataset: Path, tmp_path: Path, *options: str | Path) -> list[dict]:
    report = tmp_path / "report.json"
    run = run_cli("check", dataset, "--format", "json", "--output", report, "--fail-on", "never", *options)
    assert run.exit_code == 0, run.stdout + run.stderr
    return json.loads(report.read_text())["findings"]


def _flagged(findings: list[dict], check: str) -> set[str]:
    return {path for finding in findings if finding["check"] == check for path in finding["paths"]}


def test_brightened_photos_are_overexposed_where_light_says_nothing(flowers_sample: Path, tmp_path: Path) -> None:
    """Daisies brightened 3x and 6x: most of each picture clipped, but in all but one the darkest parts stay dark, so
    only `overexposed` sees them. Of the originals only a daisy on a pure white background is, as it should be."""
    daisies = sorted((flowers_sample / "daisy").glob("*.jpg"))
    roses = sample_photos(flowers_sample, "roses", 20)
    root = copy_dataset(tmp_path / "photos", {"daisy": daisies[:20], "roses": roses})
    planted = [
        edited(daisies[index], root / "daisy" / f"{daisies[index].stem}-x{factor}.jpg", brightened(factor), quality=90)
        for index, factor in ((27, 6), (32, 6), (36, 6), (27, 3), (36, 3))
    ]
    findings = _findings(root, tmp_path, "--only", "overexposed,light", "--property-cache", tmp_path / "cache")
    white_background = "daisy/11642632_1e7627a2cc.jpg"
    assert _flagged(findings, "overexposed") == {f"daisy/{path.name}" for path in planted} | {white_background}
    assert _flagged(findings, "light") == {f"daisy/{planted[0].name}"}  # the one blown to white all over
    clipped = [f["details"]["clipped"] for f in findings if f["check"] == "overexposed"]
    assert min(clipped) >= 0.5
