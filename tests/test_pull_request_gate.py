"""A pull request on flowers-dev, judged for what it did and only that (issue 27): copies filed under other classes, a
mirrored copy, a truncated file and three tulip test photos moved into daisy, against main's audit and run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import ImageOps

from retrain.core.dataset import split_for
from tests.conftest import DATA_ROOT, run_cli
from tests.defects import edited, linked_or_copied, truncated

FLOWERS_DEV = DATA_ROOT / "flowers-dev"


def _linked(source: Path, target: Path) -> Path:
    """A copy of ``source`` made of hard links where the file system allows (the audit skips symbolic links that leave
    the dataset)."""
    for photo in sorted(source.rglob("*.jpg")):
        linked_or_copied(photo, target / photo.relative_to(source))
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
    tulip_tests = [
        photo for photo in sorted((branch / "tulips").glob("1*.jpg")) if split_for(photo, 10, 10) == "testing"
    ]
    for photo in tulip_tests[:3]:
        photo.unlink()  # a hard link: the shared photo stays
        target = branch / "daisy" / photo.name
        shutil.copy(FLOWERS_DEV / "tulips" / photo.name, target)
        moved.append(target.relative_to(branch).as_posix())
    touched |= set(moved)
    code, audit = _audit(
        branch, bottleneck_dir, root / "branch.json", "--baseline", root / "main.json", "--fail-on", "warning",
        "--fail-on-new",
    )  # fmt: skip
    return {
        "baseline": baseline, "audit": audit, "code": code, "touched": touched, "moved": moved, "main": main,
        "branch": branch, "root": root,
    }  # fmt: skip


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


def _train(dataset: Path, bottleneck_dir: Path, output: Path, *options: str | Path):
    return run_cli(
        "train", dataset, "--output-dir", output, "--bottleneck-dir", bottleneck_dir, "--random-seed", "1",
        "--max-class-regression", "0.05", "--min-class-support", "5", *options,
    )  # fmt: skip


@pytest.fixture(scope="module")
def main_run(pull_request: dict, bottleneck_dir: Path) -> Path:
    output = pull_request["root"] / "main-run"
    run = _train(pull_request["main"], bottleneck_dir, output)
    assert run.exit_code == 0, run.stdout + run.stderr
    return output


def test_the_model_gate_does_not_blame_the_model_for_the_relabelled_photos(
    pull_request: dict, main_run: Path, bottleneck_dir: Path
) -> None:
    """The three moved tulips are test photos: the model still calls them tulips, so daisy's recall on the whole test
    set drops, but the gate compares the photos both runs share and names the relabelled ones apart."""
    output = pull_request["root"] / "branch-run"
    run = _train(pull_request["branch"], bottleneck_dir, output, "--baseline", main_run)
    assert run.exit_code == 0, run.stdout + run.stderr
    summary = (output / "report" / "summary.md").read_text()
    assert "3 test photos relabelled tulips -> daisy: the model still says tulips" in summary, summary
    assert "recall dropped" not in summary
    # With the branch's audit, the summary leads with the data's change and links each moved photo to its findings.
    linked = run_cli("report", output, "--audit", pull_request["root"] / "branch.json", "--print-summary")
    assert linked.exit_code == 0, linked.stdout + linked.stderr
    assert linked.stdout.splitlines()[2].startswith("**Change:** +5 roses, +5 tulips, 3 moved tulips -> daisy; caused:")
    relabelled = [line for line in linked.stdout.splitlines() if "tulips -> daisy, the model says tulips" in line]
    assert len(relabelled) == 3
    assert sum("the audit flags it: suspected\\_mislabel" in line for line in relabelled) >= 2, relabelled  # markdown


def test_train_with_the_audit_writes_the_linked_report_in_one_step(
    pull_request: dict, main_run: Path, bottleneck_dir: Path
) -> None:
    """``train --audit``: the report leads with the data's change and links the moved photos as it is written, so a
    gate needs no ``report --audit`` process after it; it says what the rerendered report says."""
    output = pull_request["root"] / "audited-run"
    audit = pull_request["root"] / "branch.json"
    run = _train(pull_request["branch"], bottleneck_dir, output, "--baseline", main_run, "--audit", audit)
    assert run.exit_code == 0, run.stdout + run.stderr
    written = (output / "report" / "summary.md").read_text()
    assert written.splitlines()[2].startswith("**Change:** +5 roses, +5 tulips, 3 moved tulips -> daisy; caused:")
    assert "the audit flags it: suspected\\_mislabel" in written
    html = (output / "report" / "report.html").read_text()
    assert "suspected_mislabel" in html
    rerendered = run_cli("report", output, "--audit", audit, "--print-summary")
    assert rerendered.exit_code == 0 and rerendered.stdout == written
    assert (output / "report" / "report.html").read_text() == html


def test_train_refuses_an_audit_file_that_is_not_one_before_any_work(pull_request: dict, tmp_path: Path) -> None:
    (tmp_path / "audit.json").write_text("{not json")
    run = run_cli("train", pull_request["branch"], "--output-dir", tmp_path / "run", "--audit", tmp_path / "audit.json")
    assert run.exit_code == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not (tmp_path / "run").exists()


def test_the_model_gate_fires_when_the_model_itself_gets_worse(
    pull_request: dict, main_run: Path, bottleneck_dir: Path
) -> None:
    """The same change with a barely trained head: worse on the photos both runs share, and the gate says so."""
    output = pull_request["root"] / "poor-run"
    run = _train(
        pull_request["branch"], bottleneck_dir, output, "--baseline", main_run, "--how-many-training-steps", "1",
        "--learning-rate", "0.0001",
    )  # fmt: skip
    assert run.exit_code == 1, run.stdout + run.stderr
    assert "recall on the test photos both runs share dropped more than --max-class-regression" in run.stdout


def test_gate_judges_the_data_and_the_model_in_one_command(
    pull_request: dict, main_run: Path, bottleneck_dir: Path
) -> None:
    """``retrain-ci gate`` against main's outputs kept as the Action keeps them (audit.json, report/): the same audit
    as ``check --baseline --fail-on-new``, a report led by the change, and exit 1 for the truncated file it added."""
    kept = pull_request["root"] / "kept"
    kept.mkdir()
    shutil.copy(pull_request["root"] / "main.json", kept / "audit.json")
    shutil.copytree(main_run / "report", kept / "report")
    output = pull_request["root"] / "gate"
    run = run_cli(
        "gate", pull_request["branch"], "--baseline", kept, "--output-dir", output, "--bottleneck-dir", bottleneck_dir,
        "--fail-on", "warning",
    )  # fmt: skip
    assert run.exit_code == 1, run.stdout + run.stderr
    audit = json.loads((output / "audit" / "audit.json").read_text())
    assert {f["fingerprint"] for f in audit["findings"]} == {
        f["fingerprint"] for f in pull_request["audit"]["findings"]
    }
    assert audit["summary"]["change"] == pull_request["audit"]["summary"]["change"]
    summary = (output / "report" / "summary.md").read_text().splitlines()
    assert summary[2].startswith("**Change:** +5 roses, +5 tulips, 3 moved tulips -> daisy; caused:")
    assert "3 test photos relabelled tulips -> daisy" in "\n".join(summary)
    assert "Gate: passed" in run.stdout  # the model's gate; the data's failed
    assert not (output / "saved_model").exists()  # a gate exports no model unless asked


def test_gate_refuses_bad_input_in_one_line_before_any_work(tmp_path: Path) -> None:
    run = run_cli("gate", tmp_path / "missing", "--output-dir", tmp_path / "out")
    assert run.exit_code == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "does not exist" in run.stderr and not (tmp_path / "out").exists()
