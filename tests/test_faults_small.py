"""Smaller faults of issue 30: leftovers of a killed audit, a copy's skip reason, degenerate hashes, notes in a class
folder, JSON that other tools can read, and the workflows' token permissions."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import CliRun, copy_dataset, run_cli, sample_photos

SPLIT = ("--testing-percentage", "20", "--validation-percentage", "20")
UNDECODABLE = b"bad\xffname.jpg"
WORKFLOWS = Path(__file__).resolve().parents[1] / ".github" / "workflows"


def dead_pid() -> int:
    """The id of a process that has ended."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_killed_report_dir_write_is_cleaned_up_by_the_next_run(flowers_sample: Path, tmp_path: Path) -> None:
    root = copy_dataset(tmp_path / "photos", {label: sample_photos(flowers_sample, label, 3) for label in ("a", "b")})
    leftover = tmp_path / f".audit.{dead_pid()}.tmp"  # what `check --report-dir audit` killed mid-write leaves
    leftover.mkdir()
    (leftover / "audit.html").write_text("<half")
    run = run_cli("check", root, "--only", "too_few_images", "--report-dir", tmp_path / "audit")
    assert run.exit_code in (0, 1), run.stdout + run.stderr
    assert (tmp_path / "audit" / "audit.html").is_file()
    assert not leftover.exists()


@pytest.fixture(scope="module")
def with_junk(flowers_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes with two byte-identical broken "photos", a notes file and a name that is not valid UTF-8."""
    root = tmp_path_factory.mktemp("junk") / "photos"
    copy_dataset(
        root, {"daisy": sample_photos(flowers_sample, "daisy", 12), "roses": sample_photos(flowers_sample, "roses", 12)}
    )
    (root / "daisy" / "broken one.jpg").write_text("not a photo")
    (root / "roses" / "broken two.jpg").write_text("not a photo")
    (root / "daisy" / "notes.txt").write_text("shot in May")
    with open(os.path.join(os.fsencode(root / "roses"), UNDECODABLE), "wb") as file:
        file.write(sample_photos(flowers_sample, "roses", 13)[-1].read_bytes())
    return root


@pytest.fixture(scope="module")
def junk_run(with_junk: Path, bottleneck_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    output_dir = tmp_path_factory.mktemp("junk-run")
    run = run_cli(
        "train", with_junk, "--bottleneck-dir", bottleneck_dir, "--output-dir", output_dir,
        "--how-many-training-steps", "5", *SPLIT,
    )  # fmt: skip
    assert run.exit_code == 0, run.stdout + run.stderr
    return run


def test_each_copy_of_a_broken_file_is_skipped_in_its_own_name(with_junk: Path, junk_run: CliRun) -> None:
    warnings = [line for line in junk_run.stderr.splitlines() if "broken" in line]
    assert len(warnings) == 2, junk_run.stderr
    for name, other in (("daisy/broken one.jpg", "broken two"), ("roses/broken two.jpg", "broken one")):
        (line,) = [
            line for line in warnings if line.startswith(f"warning: skipped unreadable image {with_junk / name}:")
        ]
        assert other not in line, line


def test_a_notes_file_is_ignored_not_skipped_as_an_image(with_junk: Path, junk_run: CliRun, tmp_path: Path) -> None:
    assert "notes.txt" not in junk_run.stderr + junk_run.stdout
    assert "3 skipped" in junk_run.stdout  # the two broken files and the undecodable name, not the notes
    report = tmp_path / "audit.json"
    run_cli("check", with_junk, "--only", "corrupt_image,non_image_file", "--format", "json", "--output", report)
    audit = json.loads(report.read_text(encoding="utf-8"))
    assert [f["paths"] for f in audit["findings"] if f["check"] == "non_image_file"] == [["daisy/notes.txt"]]
    assert "daisy/notes.txt" not in {
        path for f in audit["findings"] if f["check"] == "corrupt_image" for path in f["paths"]
    }
    assert audit["summary"]["images"] == 26  # 24 photos and the 2 broken ones: the notes are no image


def _strict_json(text: str) -> dict:
    """Parsed as strict tools parse it: every string valid UTF-8, no lone surrogate escape."""
    document = json.loads(text)
    json.dumps(document, ensure_ascii=False).encode("utf-8")
    return document


def test_audit_json_is_valid_utf8_with_the_raw_name_beside_it(with_junk: Path, tmp_path: Path) -> None:
    report = tmp_path / "audit.json"
    run_cli("check", with_junk, "--only", "undecodable_name", "--format", "json", "--output", report)
    (finding,) = _strict_json(report.read_text(encoding="utf-8"))["findings"]
    assert finding["paths"] == ["roses/bad\\xffname.jpg"]
    (raw,) = [base64.b64decode(name) for name in finding["paths_bytes"]]
    assert raw == b"roses/" + UNDECODABLE
    assert os.path.isfile(os.path.join(os.fsencode(with_junk), raw))

    # Read back as a baseline, the same file is the same file: not removed and added again, its finding unchanged.
    again = tmp_path / "again.json"
    run_cli(
        "check", with_junk, "--only", "undecodable_name", "--baseline", report, "--format", "json", "--output", again
    )
    document = _strict_json(again.read_text(encoding="utf-8"))
    assert document["summary"]["change"] == "" or "removed" not in document["summary"]["change"]
    assert [finding["status"] for finding in document["findings"]] == ["unchanged"]


def test_evaluate_json_is_valid_utf8_with_the_raw_name_beside_it(with_junk: Path, junk_run: CliRun) -> None:
    run = run_cli("evaluate", junk_run.output_dir / "saved_model", with_junk, "--format", "json")
    assert run.exit_code == 0, run.stdout + run.stderr
    document = _strict_json(run.stdout)
    skipped = dict(zip(document["skipped"], document["skipped_bytes"], strict=True))
    assert (
        base64.b64decode(skipped[f"{with_junk}/roses/bad\\xffname.jpg"])
        == os.fsencode(with_junk / "roses") + b"/" + UNDECODABLE
    )


def test_degenerate_images_are_not_paired_by_perceptual_hash(flowers_sample: Path, tmp_path: Path) -> None:
    root = copy_dataset(tmp_path / "photos", {label: sample_photos(flowers_sample, label, 4) for label in ("a", "b")})
    noise = np.random.default_rng(0).integers(0, 256, (10, 20000, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "b" / "strip.png")
    Image.new("RGB", (1, 1), (200, 30, 30)).save(root / "a" / "dot.png")
    Image.new("RGB", (10, 20000), (30, 30, 200)).save(root / "b" / "pole.png")
    photo = Image.open(sample_photos(flowers_sample, "daisy", 5)[-1])
    photo.resize((photo.width // 2, photo.height // 2)).save(root / "a" / "smaller.jpg")
    photo.save(root / "b" / "copy.jpg")  # a real copy across classes: still paired by hash
    report = tmp_path / "audit.json"
    run_cli("check", root, "--only", "near_duplicates", "--no-bottlenecks", "--format", "json", "--output", report)
    groups = [sorted(f["paths"]) for f in json.loads(report.read_text(encoding="utf-8"))["findings"]]
    assert groups == [["a/smaller.jpg", "b/copy.jpg"]]


@pytest.mark.parametrize("workflow", sorted(WORKFLOWS.glob("*.yml")), ids=lambda path: path.name)
def test_every_workflow_job_reads_the_code_and_nothing_more(workflow: Path) -> None:
    for name, job in yaml.safe_load(workflow.read_text(encoding="utf-8"))["jobs"].items():
        assert job.get("permissions") == {"contents": "read"}, name
