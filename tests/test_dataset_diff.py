"""A dataset that grows by pull requests: what a change did to the files and the findings, against an earlier audit."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import ImageOps

from retrain.core.dataset import split_for
from retrain.core.settings_file import tomllib
from tests.conftest import run_cli
from tests.defects import edited, resized

# the pixel checks only: no TensorFlow
PIXELS = ("--skip", "suspected_mislabel,shortcut_bias,outlier", "--no-bottlenecks")
GRAYSCALE = "roses/13342823005_16d3df58df_n.jpg"  # black and white in the sample: the old finding the change fixes
NEAR_PAIR = "sunflowers/14741866338_bdc8bfc8d5_n.jpg"  # one of the sample's near-duplicate pair, which the change grows
pytest_plugins = ["pytester"]


def _mirrored(photo: Path, target: Path) -> Path:
    """New content, not a copy: a mirror image is far from the original's perceptual hash."""
    return edited(photo, target, ImageOps.mirror)


def audit(*args: str | Path) -> tuple[int, dict]:
    run = run_cli("check", *args, *PIXELS, "--format", "json")
    return run.exit_code, json.loads(run.stdout) if run.stdout.startswith("{") else {}


@dataclass
class PullRequest:
    baseline: Path  # the main branch's audit JSON
    before: Path
    after: Path
    test_photo: str  # a photo of the testing split that the change adds a resized copy of


@pytest.fixture(scope="module")
def pull_request(flowers_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> PullRequest:
    """The sample as main has it, audited; then a change: 2 new roses, a resized copy of a dandelion test photo and of
    a near-duplicated sunflower, 2 daisies removed, 2 tulips moved to roses, a corrupt tulip, the grayscale rose
    replaced by a colour photo."""
    root = tmp_path_factory.mktemp("pull-request")
    before, after = shutil.copytree(flowers_sample, root / "main"), root / "branch"
    baseline = root / "main.json"
    run = run_cli("check", before, *PIXELS, "--format", "json", "--output", baseline)
    assert run.exit_code == 0, run.stdout + run.stderr
    shutil.copytree(before, after)
    test_photo = next(p for p in sorted((after / "dandelion").glob("*.jpg")) if split_for(p, 10, 10) == "testing")
    edited(test_photo, after / "dandelion" / "resized-copy.jpg", resized, quality=90)
    edited(after / NEAR_PAIR, after / "sunflowers" / "third-copy.jpg", resized, quality=90)
    sunflowers = sorted((after / "sunflowers").glob("1*.jpg"))
    for index, photo in enumerate(sunflowers[10:12]):
        _mirrored(photo, after / "roses" / f"new-rose-{index}.jpg")
    for photo in sorted((after / "daisy").glob("*.jpg"))[:2]:
        photo.unlink()
    for photo in sorted((after / "tulips").glob("*.jpg"))[:2]:
        shutil.move(photo, after / "roses" / photo.name)
    (after / "tulips" / "broken.jpg").write_bytes(b"not a JPEG at all")
    _mirrored(sorted((after / "daisy").glob("*.jpg"))[5], after / GRAYSCALE)
    return PullRequest(baseline, before, after, test_photo.relative_to(after).as_posix())


def test_json_audit_has_a_manifest_of_every_file(pull_request: PullRequest) -> None:
    old = json.loads(pull_request.baseline.read_text())
    assert (old["format"], old["version"]) == ("retrain-ci-audit", 1)
    files = sorted(p.relative_to(pull_request.before).as_posix() for p in pull_request.before.rglob("*.jpg"))
    assert sorted(entry["path"] for entry in old["manifest"]) == files
    entry = next(e for e in old["manifest"] if e["path"] == GRAYSCALE)
    assert entry["label"] == "roses" and entry["split"] == split_for(GRAYSCALE, 10, 10)
    assert entry["key"] == hashlib.sha1((pull_request.before / GRAYSCALE).read_bytes()).hexdigest()
    assert all(finding["fingerprint"].startswith(finding["check"] + ":") for finding in old["findings"])


def test_diff_names_exactly_what_the_change_did(pull_request: PullRequest) -> None:
    code, new = audit(pull_request.after, "--baseline", pull_request.baseline)
    diff = new["diff"]
    assert sorted(e["path"] for e in diff["added"]) == [
        "dandelion/resized-copy.jpg",
        "roses/new-rose-0.jpg",
        "roses/new-rose-1.jpg",
        "sunflowers/third-copy.jpg",
        "tulips/broken.jpg",
    ]
    assert [e["path"] for e in diff["removed"]] == sorted(
        p.relative_to(pull_request.before).as_posix() for p in sorted((pull_request.before / "daisy").glob("*.jpg"))[:2]
    )
    assert [e["path"] for e in diff["changed"]] == [GRAYSCALE]
    assert [(m["source_label"], m["target_label"]) for m in diff["moved"]] == [("tulips", "roses")] * 2
    assert diff["renamed"] == []
    assert diff["per_class"]["roses"] == {"added": 2, "changed": 1, "moved_in": 2}
    assert diff["per_class"]["tulips"] == {"added": 1, "moved_out": 2}
    assert {d["path"]: d["existing"] for d in diff["duplicates_of_existing"]} == {
        "dandelion/resized-copy.jpg": [pull_request.test_photo],
        "sunflowers/third-copy.jpg": [NEAR_PAIR, "sunflowers/14925398441_107f3e0304_n.jpg"],
    }
    assert new["summary"]["change"].startswith(
        "+1 dandelion, +2 roses, +1 sunflowers, +1 tulips, -2 daisy, 1 changed in roses, 2 moved tulips -> roses; "
    )


def test_findings_are_caused_unchanged_or_fixed(pull_request: PullRequest) -> None:
    old = json.loads(pull_request.baseline.read_text())
    code, new = audit(pull_request.after, "--baseline", pull_request.baseline)
    status = {(f["check"], tuple(f["paths"])): f["status"] for f in new["findings"]}
    assert status.pop(("corrupt_image", ("tulips/broken.jpg",))) == "caused"
    assert status.pop(("near_duplicates", (pull_request.test_photo, "dandelion/resized-copy.jpg"))) == "caused"
    assert status.pop(("split_leakage", (pull_request.test_photo, "dandelion/resized-copy.jpg"))) == "caused"
    grown = next(f for f in new["findings"] if f["check"] == "near_duplicates" and NEAR_PAIR in f["paths"])
    assert (grown["status"], grown["gained"], grown["lost"]) == ("caused", ["sunflowers/third-copy.jpg"], [])
    status.pop(("near_duplicates", tuple(grown["paths"])))
    assert set(status.values()) == {"unchanged"}  # the classes' too_few_images and the other grayscale photos
    assert len(status) == len(old["findings"]) - 2  # less the grown group and the fixed photo
    assert [(f["check"], f["paths"]) for f in new["fixed"]] == [("grayscale", [GRAYSCALE])]
    assert new["summary"]["caused"] == {"error": 1, "warning": 3, "info": 0}  # the grown group too: a copy it added
    assert new["summary"]["change"].endswith("; caused: 1 error, 3 warnings; fixed: 1")
    assert new["vanished"] == [] and new["summary"]["shifted"] == {"appeared": 0, "vanished": 0}


def test_fail_on_new_gates_only_on_what_the_change_brought(pull_request: PullRequest, tmp_path: Path) -> None:
    baseline = ("--baseline", pull_request.baseline)
    assert audit(pull_request.before, "--fail-on", "warning")[0] == 1  # main's own debts: too few images a class
    assert audit(pull_request.before, *baseline, "--fail-on", "warning", "--fail-on-new")[0] == 0
    assert audit(pull_request.after, *baseline)[0] == 1  # the corrupt tulip
    assert audit(pull_request.after, *baseline, "--fail-on-new")[0] == 1
    clean = shutil.copytree(pull_request.before, tmp_path / "clean-change")
    _mirrored(next((clean / "sunflowers").glob("*.jpg")), clean / "roses" / "mirrored.jpg")
    code, new = audit(clean, *baseline, "--fail-on", "warning", "--fail-on-new")
    assert code == 0 and new["summary"]["findings"]["warning"] == 6  # the totals still show
    assert audit(clean, *baseline, "--fail-on", "warning")[0] == 1
    assert audit(clean, "--fail-on-new")[0] == 2  # no baseline to be new against


def test_table_and_markdown_lead_with_the_change(pull_request: PullRequest) -> None:
    args = ("check", pull_request.after, *PIXELS, "--baseline", pull_request.baseline)
    markdown = run_cli(*args, "--format", "markdown").stdout
    assert "**Change:** +1 dandelion, +2 roses" in markdown
    assert f"- added `dandelion/resized-copy.jpg` copies `{pull_request.test_photo}` (`near_duplicates`)" in markdown
    assert f"- **fixed** `{GRAYSCALE}`: black and white" in markdown
    section = markdown.split("### `near_duplicates` (2)")[1]
    assert section.index("**caused** `dandelion/") < section.index("**caused** `sunflowers/")
    table = run_cli(*args).stdout
    lines = table.splitlines()
    assert lines[0].startswith("FAILED --fail-on error") and lines[2].startswith("change: +1 dandelion, +2 roses")
    assert "caused: 1 error, 3 warnings; fixed: 1" in " ".join(table.split())
    block = table.split("near_duplicates:")[1].split("\n\n")[0].splitlines()
    marked = [line.split()[0] for line in block if line.startswith("  [")]
    assert marked == ["[caused]", "[caused]"]  # caused findings first in each check, marked before the path
    assert any(line.startswith("  [caused] dandelion/") for line in block)


def test_github_annotations_mark_only_what_the_change_brought(pull_request: PullRequest) -> None:
    everything = run_cli("check", pull_request.after, *PIXELS, "--format", "github").stdout.splitlines()
    lines = run_cli(
        "check", pull_request.after, *PIXELS, "--baseline", pull_request.baseline, "--format", "github"
    ).stdout.splitlines()
    annotated = [line for line in lines if "title=retrain-ci check" not in line]
    assert len(annotated) == 4  # the corrupt tulip, the copy of a test photo twice, the grown sunflower group
    assert sum("tulips/broken.jpg" in line for line in annotated) == 1
    assert all("too_few_images" not in line for line in annotated)  # main's old debts are not the change's
    (notice,) = [line for line in lines if "title=retrain-ci check" in line]
    assert notice.startswith(f"::notice title=retrain-ci check::{len(everything) - 4} more findings, not caused")


def test_accepted_finding_is_recorded_and_never_fails_the_gate(pull_request: PullRequest, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    pyproject = project / "pyproject.toml"
    pyproject.write_text('[project]\nname = "flowers"  # ours\n\n[tool.retrain-ci]\nfail-on = "error"\n')
    original = pyproject.read_text()
    code, new = audit(pull_request.after, "--baseline", pull_request.baseline, "--config", pyproject)
    corrupt = next(f["fingerprint"] for f in new["findings"] if f["check"] == "corrupt_image")
    run = run_cli(
        "check", pull_request.after, *PIXELS, "--config", pyproject, "--baseline", pull_request.baseline,
        "--accept", corrupt, "--reason", 'a test fixture, "broken" on purpose', "--format", "json",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    written = pyproject.read_text()
    assert written.startswith(original)  # the user's file is kept as it was, the entry appended
    assert tomllib.loads(written)["tool"]["retrain-ci"] == {
        "fail-on": "error",
        "accepted": [{"fingerprint": corrupt, "reason": 'a test fixture, "broken" on purpose'}],
    }
    code, again = audit(pull_request.after, "--baseline", pull_request.baseline, "--config", pyproject)
    assert code == 0  # read back from the file: still listed, never failing
    listed = next(f for f in again["findings"] if f["fingerprint"] == corrupt)
    assert listed["accepted"] == {"reason": 'a test fixture, "broken" on purpose'} and listed["status"] == "caused"
    assert again["summary"]["accepted"] == 1
    run_cli("check", pull_request.after, *PIXELS, "--config", pyproject, "--accept", corrupt)
    assert pyproject.read_text() == written  # accepting twice records it once


def test_every_new_flag_is_a_setting(pull_request: PullRequest, tmp_path: Path) -> None:
    settings = tmp_path / "retrain-ci.toml"
    shutil.copy(pull_request.baseline, tmp_path / "main.json")
    settings.write_text('baseline = "main.json"\nfail-on-new = true\nfail-on = "warning"\n')
    code, new = audit(pull_request.before, "--config", settings)
    assert code == 0 and new["baseline"] == str(tmp_path / "main.json")
    assert audit(pull_request.before, "--config", settings, "--fail-on-all")[0] == 1
    assert audit(pull_request.after, "--config", settings)[0] == 1
    settings.write_text('fail-on-new = true\nfail-on = "warning"\n')  # the baseline given per run
    assert audit(pull_request.before, "--config", settings, "--baseline", pull_request.baseline)[0] == 0
    assert audit(pull_request.before, "--config", settings)[0] == 2


def test_accepting_an_unknown_fingerprint_writes_nothing(
    pull_request: PullRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run = run_cli("check", pull_request.before, *PIXELS, "--accept", "grayscale:0000")
    assert run.exit_code == 2 and "error: no finding of this audit has fingerprint 'grayscale:0000'" in run.stderr
    assert not (tmp_path / "retrain-ci.toml").exists()


def test_accepting_without_a_settings_file_creates_retrain_ci_toml(
    pull_request: PullRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, old = audit(pull_request.before)
    grayscale = [f["fingerprint"] for f in old["findings"] if f["check"] == "grayscale"][:2]
    args = ("check", pull_request.before, *PIXELS, "--fail-on", "never")
    assert run_cli(*args, "--accept", grayscale[0], "--accept", grayscale[1]).exit_code == 0
    accepted = tomllib.loads((tmp_path / "retrain-ci.toml").read_text())["accepted"]
    assert accepted == [{"fingerprint": fingerprint, "reason": ""} for fingerprint in grayscale]
    code, again = audit(pull_request.before)
    assert [f["fingerprint"] for f in again["findings"] if "accepted" in f] == grayscale


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"{not json", "is not JSON"),
        (b'{"dataset": "x", "findings": []}', "is not a `retrain-ci check --format json` audit"),
        (b'{"format": "retrain-ci-audit", "version": 99}', "is audit format version 99; this retrain-ci reads 1"),
        (b'{"format": "retrain-ci-audit", "version": 1, "findings": []}', "is damaged"),
        (b"\xff\xfe", "is not JSON"),
    ],
)
def test_bad_baseline_is_one_line_and_writes_nothing(
    pull_request: PullRequest, tmp_path: Path, content: bytes | None, message: str
) -> None:
    baseline = tmp_path / "old.json"
    if content is not None:
        baseline.write_bytes(content)
    report = tmp_path / "audit.json"
    run = run_cli("check", pull_request.after, *PIXELS, "--baseline", baseline, "--format", "json", "--output", report)
    assert run.exit_code == 2
    assert run.stderr.startswith("error: baseline ") and message in run.stderr and run.stderr.count("\n") == 1
    assert not report.exists() and run.stdout == ""


def test_unreadable_baseline(pull_request: PullRequest, tmp_path: Path) -> None:
    baseline = tmp_path / "old.json"
    baseline.mkdir()
    run = run_cli("check", pull_request.after, *PIXELS, "--baseline", baseline)
    assert run.exit_code == 2 and run.stderr.startswith("error: cannot read baseline ")


def test_pytest_plugin_makes_items_of_new_findings_only(pull_request: PullRequest, pytester: pytest.Pytester) -> None:
    settings = 'skip = ["suspected_mislabel", "shortcut_bias", "outlier"]\nuse-bottlenecks = false\n'  # as PIXELS
    pytester.makefile(".toml", **{"retrain-ci": settings})
    result = pytester.runpytest_subprocess(
        f"--retrain-data={pull_request.after}", f"--retrain-baseline={pull_request.baseline}", "-rfs"
    )
    code, new = audit(pull_request.after, "--baseline", pull_request.baseline)
    by_status = {}
    for finding in new["findings"]:
        by_status.setdefault(finding["status"], []).append(finding["fingerprint"])
    # the corrupt tulip fails; the new near-duplicate and leak are warnings (xfailed); the rest are skipped, each once;
    # each check that found nothing passes
    others = len(new["findings"]) - len(by_status["caused"])
    clean = set(new["summary"]["checks_run"]) - {finding["check"] for finding in new["findings"]}
    result.assert_outcomes(failed=1, xfailed=len(by_status["caused"]) - 1, skipped=others, passed=len(clean))
    corrupt = next(f["fingerprint"] for f in new["findings"] if f["check"] == "corrupt_image")
    result.stdout.fnmatch_lines([f"FAILED datacheck::{corrupt}*"])
    for fingerprint in by_status["unchanged"]:
        assert result.stdout.str().count(f"unchanged since the baseline: {fingerprint}") == 1


def test_pytest_plugin_bad_baseline_is_one_line(
    pull_request: PullRequest, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))  # this checkout's plugin, not another's
    result = pytester.runpytest_subprocess(
        f"--retrain-data={pull_request.after}", f"--retrain-baseline={pytester.path / 'missing.json'}"
    )
    result.assert_outcomes(failed=1)  # one item; the collection, and so the user's own tests, go on
    result.stdout.fnmatch_lines(["error: baseline */missing.json does not exist"])
    assert "Traceback" not in result.stdout.str()


def test_findings_on_untouched_files_shift_they_are_neither_caused_nor_fixed(
    pull_request: PullRequest, tmp_path: Path
) -> None:
    """What moves without the change touching it (here a retuned threshold; in real audits a dataset-wide model) is
    "shifted": listed apart, never counted as caused or fixed, and never failing --fail-on-new (issue 27)."""
    strict = tmp_path / "strict.toml"
    strict.write_text("min-side = 250\n")  # tiny_image (a warning) on every photo under 250 px
    baseline = tmp_path / "strict.json"
    run = run_cli("check", pull_request.before, *PIXELS, "--config", strict, "--format", "json", "--output", baseline)
    assert run.exit_code == 0, run.stdout + run.stderr
    old = json.loads(baseline.read_text())
    code, new = audit(pull_request.before, "--baseline", baseline, "--fail-on", "warning", "--fail-on-new")
    gone = [f for f in old["findings"] if f["check"] == "tiny_image"]
    still = [f for f in new["findings"] if f["check"] == "tiny_image"]
    assert len(gone) > len(still)  # the strict threshold flagged more photos, none of which the change touched
    assert new["fixed"] == [] and len(new["vanished"]) == len(gone) - len(still)
    assert new["summary"]["shifted"] == {"appeared": 0, "vanished": len(gone) - len(still)}
    assert "neither caused nor fixed" in new["summary"]["change"] and "; fixed: 0" in new["summary"]["change"]
    assert code == 0
    # The other way round: photos flagged only by the stricter audit appear on untouched files, shifted.
    code, reverse = audit(
        pull_request.before, "--config", strict, "--baseline", pull_request.baseline, "--fail-on", "warning",
        "--fail-on-new",
    )  # fmt: skip
    appeared = [f for f in reverse["findings"] if f["status"] == "shifted"]
    assert appeared and {f["check"] for f in appeared} == {"tiny_image"}
    assert reverse["summary"]["caused"] == {"error": 0, "warning": 0, "info": 0} and code == 0
