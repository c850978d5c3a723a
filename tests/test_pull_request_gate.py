"""A pull request on flowers-dev, judged for what it did and only that (issue 27): copies filed under other classes, a
mirrored copy, a truncated file and three tulips moved into daisy, against the main branch's audit."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import ImageOps

from tests.conftest import DATA_ROOT, run_cli
from tests.defects import edited, truncated

FLOWERS_DEV = DATA_ROOT / "flowers-dev"


def _linked(source: Path, target: Path) -> Path:
    """A copy of ``source`` made of hard links where the file system allows (the audit skips symbolic links that leave
    the dataset)."""
    for photo in sorted(source.rglob("*.jpg")):
        destination = target / photo.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(photo, destination)
        except OSError:
            shutil.copy(photo, destination)
    return target


def _audit(dataset: Path, bottleneck_dir: Path, output: Path, *options: str | Path) -> tuple[int, dict]:
    run = run_cli(
        "check", dataset, "--format", "json", "--output", output, "--bottleneck-dir", bottleneck_dir, *options
    )  # fmt: skip
    assert run.exit_code in (0, 1), run.stdout + run.stderr
    return run.exit_code, json.loads(output.read_text())


@pytest.fixture(scope="module")
def pull_request(bottleneck_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """main: flowers-dev, audited; the branch: 8 daisy and sunflower photos copied into roses and tulips, a mirrored
    rose, a truncated copy of a tulip, and 3 tulips moved into daisy."""
    if not FLOWERS_DEV.is_dir():
        pytest.fail(f"flowers-dev not found at {FLOWERS_DEV}; set RETRAIN_CI_DATA to the shared data folder")
    root = tmp_path_factory.mktemp("pull-request")
    main = _linked(FLOWERS_DEV, root / "main")
    _, baseline = _audit(main, bottleneck_dir, root / "main.json", "--fail-on", "never")
    branch = _linked(FLOWERS_DEV, root / "branch")
    touched = set()
    sources = sorted((branch / "daisy").glob("*.jpg"))[100:104] + sorted((branch / "sunflowers").glob("*.jpg"))[50:54]
    for index, photo in enumerate(sources):
        target = branch / ("roses" if index % 2 else "tulips") / f"pr-copy-{index}.jpg"
        shutil.copy(photo, target)
        touched.add(target.relative_to(branch).as_posix())
    rose = sorted((branch / "roses").glob("*.jpg"))[60]
    touched.add(edited(rose, branch / "roses" / "pr-mirrored.jpg", ImageOps.mirror).relative_to(branch).as_posix())
    tulip = sorted((branch / "tulips").glob("*.jpg"))[70]
    touched.add(truncated(tulip, branch / "tulips" / "pr-truncated.jpg").relative_to(branch).as_posix())
    moved = []
    for photo in sorted((branch / "tulips").glob("1*.jpg"))[:3]:
        photo.unlink()  # a hard link: the shared photo stays
        target = branch / "daisy" / photo.name
        shutil.copy(FLOWERS_DEV / "tulips" / photo.name, target)
        moved.append(target.relative_to(branch).as_posix())
    touched |= set(moved)
    code, audit = _audit(
        branch, bottleneck_dir, root / "branch.json", "--baseline", root / "main.json", "--fail-on", "warning",
        "--fail-on-new",
    )  # fmt: skip
    return {"baseline": baseline, "audit": audit, "code": code, "touched": touched, "moved": moved}


def _names_touched(finding: dict, touched: set[str]) -> bool:
    folders = {path.split("/", 1)[0] for path in touched} | {"tulips"}  # tulips lost the 3 moved photos
    return any(path in touched or path in folders for path in finding["paths"])


def test_only_findings_on_what_the_pull_request_touched_are_caused(pull_request: dict) -> None:
    """Every finding naming a file the change added or moved is caused; no finding on untouched files is, and none
    of the baseline's findings on untouched files is called fixed."""
    audit, touched = pull_request["audit"], pull_request["touched"]
    for finding in audit["findings"]:
        expected = "caused" if _names_touched(finding, touched) else {"shifted", "unchanged"}
        assert finding["status"] in ({expected} if isinstance(expected, str) else expected), finding
    assert all(_names_touched(finding, touched | set(pull_request["moved"])) for finding in audit["fixed"])
    assert all(not _names_touched(finding, touched) for finding in audit["vanished"])


def test_each_planted_problem_is_caught_and_charged_to_the_change(pull_request: dict) -> None:
    audit, moved = pull_request["audit"], pull_request["moved"]
    caused = [finding for finding in audit["findings"] if finding["status"] == "caused"]
    conflicting = {path for f in caused if f["check"] == "conflicting_labels" for path in f["paths"]}
    assert {f"{label}/pr-copy-{index}.jpg" for index, label in enumerate(["tulips", "roses"] * 4)} <= conflicting
    assert any(f["check"] == "corrupt_image" and f["paths"] == ["tulips/pr-truncated.jpg"] for f in caused)
    assert any(f["check"] == "near_duplicates" and "roses/pr-mirrored.jpg" in f["paths"] for f in caused)
    suspects = {f["paths"][0] for f in caused if f["check"] == "suspected_mislabel"}
    assert len(suspects & set(moved)) >= 2, suspects  # tulips filed as daisy: the model says tulips


def test_fail_on_new_fails_on_exactly_the_caused_findings(pull_request: dict) -> None:
    """The gate fails (the corrupt file and conflicting copies are errors), and what it counts are the caused
    findings at or above warning; shifted ones are listed apart, never as caused or fixed."""
    audit = pull_request["audit"]
    assert pull_request["code"] == 1
    caused = [f for f in audit["findings"] if f["status"] == "caused" and f["severity"] in ("error", "warning")]
    counts = audit["summary"]["caused"]
    assert counts["error"] + counts["warning"] == len(caused)
    shifted = audit["summary"]["shifted"]
    line = audit["summary"]["change"]
    assert line.startswith("+5 roses, +5 tulips, 3 moved tulips -> daisy; caused: ")
    assert ("shifted on untouched files" in line) == bool(shifted["appeared"] or shifted["vanished"])
