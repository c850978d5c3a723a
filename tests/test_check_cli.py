"""`retrain-ci check` options: report formats, the CI gate, settings files, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import DefectiveDataset, copy_dataset, run_cli, sample_photos

# the options under test do not depend on these
CHEAP = ("--skip", "suspected_mislabel,shortcut_bias,outlier", "--no-bottlenecks")


def _one_line_error(run, *fragments: str) -> None:
    assert run.exit_code == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    line = " ".join(run.stderr.replace("│", " ").split())
    for fragment in fragments:
        assert fragment in line, line


@pytest.fixture
def small(flowers_sample: Path, tmp_path: Path) -> Path:
    return copy_dataset(
        tmp_path / "photos", {label: sample_photos(flowers_sample, label, 30) for label in ("daisy", "roses")}
    )


def test_table_leads_with_the_verdict_then_groups_findings_by_check(defective_dataset: DefectiveDataset) -> None:
    run = run_cli("check", defective_dataset.root, *CHEAP)
    assert run.exit_code == 1
    assert run.stdout.startswith("FAILED --fail-on error: 6 findings at or above error\n")
    for check in ("corrupt_image: 3 errors", "empty_class: 1 error", "near_duplicates", "split_leakage", "blurry"):
        assert f"\n{check}" in run.stdout
    assert "  daisy/truncated.jpg" in run.stdout  # relative to the dataset, named once at the top
    assert f"files below are in {defective_dataset.root}" in run.stdout


def test_report_dir_holds_every_format_of_the_one_audit(defective_dataset: DefectiveDataset, tmp_path: Path) -> None:
    folder = tmp_path / "audit"
    run = run_cli("check", defective_dataset.root, *CHEAP, "--report-dir", folder, "--format", "json")
    assert run.exit_code == 1
    assert sorted(p.name for p in folder.iterdir()) == [".retrain-ci-output", "audit.html", "audit.json", "audit.md"]
    assert (folder / "audit.json").read_text() == run.stdout  # the same audit, not a second one
    assert "### `corrupt_image` (3)" in (folder / "audit.md").read_text()
    assert "daisy/truncated.jpg" in (folder / "audit.html").read_text()
    (tmp_path / "a-file").write_text("")
    _one_line_error(run_cli("check", defective_dataset.root, "--report-dir", tmp_path / "a-file"), "audit folder")


def test_markdown_for_a_pull_request(defective_dataset: DefectiveDataset, tmp_path: Path) -> None:
    run = run_cli("check", defective_dataset.root, *CHEAP, "--format", "markdown", "--output", tmp_path / "summary.md")
    text = (tmp_path / "summary.md").read_text()
    assert run.exit_code == 1 and run.stdout == ""
    assert text.splitlines()[2] == "**FAILED** --fail-on error: 6 findings at or above error"
    assert "| `corrupt_image` | " in text and "### `corrupt_image` (3)" in text
    assert "Training skips these: replace each with a good copy, or delete it." in text  # the check's advice
    assert "`daisy/truncated.jpg`" in text


def test_github_annotations_point_at_the_files(defective_dataset: DefectiveDataset) -> None:
    run = run_cli("check", defective_dataset.root, *CHEAP, "--format", "github")
    lines = run.stdout.splitlines()
    assert f"::error file={defective_dataset.root}/daisy/truncated.jpg,title=corrupt_image::" in "\n".join(lines)
    assert any(line.startswith("::warning file=") and "title=near_duplicates" in line for line in lines)
    assert all(line.startswith(("::error ", "::warning ", "::notice ")) for line in lines)


def test_gate_follows_fail_on(small: Path, tmp_path: Path) -> None:
    only = ("--only", "too_few_images")  # 30 photos a class: a warning, no error
    assert run_cli("check", small, *only).exit_code == 0
    assert run_cli("check", small, *only, "--fail-on", "warning").exit_code == 1
    assert run_cli("check", small, *only, "--min-images", "50").exit_code == 1
    assert run_cli("check", small, *only, "--min-images", "50", "--fail-on", "never").exit_code == 0


def test_settings_from_pyproject_in_the_working_directory(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.retrain-ci]\nrecommended-images = 25\nfail-on = "warning"\n')
    monkeypatch.chdir(tmp_path)
    run = run_cli("check", small, "--only", "too_few_images,stray_file", "--format", "json")
    assert run.exit_code == 0 and json.loads(run.stdout)["findings"] == []
    assert run_cli("check", small, "--only", "too_few_images", "--recommended-images", "40").exit_code == 1


def test_settings_from_retrain_ci_toml_in_the_working_directory(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "retrain-ci.toml").write_text('only = ["too_few_images"]\nmin-images = 31\n')
    monkeypatch.chdir(tmp_path)
    run = run_cli("check", small, "--format", "json")
    report = json.loads(run.stdout)
    assert run.exit_code == 1 and report["summary"]["checks_run"] == ["too_few_images"]
    assert {f["severity"] for f in report["findings"]} == {"error"}


def test_skip_leaves_a_check_out(defective_dataset: DefectiveDataset) -> None:
    run = run_cli("check", defective_dataset.root, *CHEAP, "--skip", "corrupt_image", "--format", "json")
    report = json.loads(run.stdout)
    assert "corrupt_image" not in report["summary"]["checks_run"]
    assert all(f["check"] != "corrupt_image" for f in report["findings"])


def test_missing_folder(tmp_path: Path) -> None:
    _one_line_error(run_cli("check", tmp_path / "nope"), "error:", "does not exist")


def test_unknown_check_id(small: Path) -> None:
    _one_line_error(run_cli("check", small, "--only", "blury"), "unknown check id 'blury'", "blurry")


def test_unknown_format(small: Path) -> None:
    _one_line_error(run_cli("check", small, "--format", "xml"), "table, json, markdown, github")


def test_unknown_setting_in_the_config_file(small: Path, tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text("min-imagse = 3\n")
    _one_line_error(run_cli("check", small, "--config", config), "unknown setting 'min-imagse'", "min-images")


def test_setting_of_the_wrong_type(small: Path, tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text('max-imbalance = "big"\n')
    _one_line_error(run_cli("check", small, "--config", config), "max-imbalance", "a number")


def test_config_file_that_is_not_toml(small: Path, tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text("min-images = [\n")
    _one_line_error(run_cli("check", small, "--config", config), "not valid TOML")


def test_bad_fail_on(small: Path) -> None:
    _one_line_error(run_cli("check", small, "--fail-on", "sometimes"), "fail-on", "error, warning, never")


def test_folder_without_classes_is_a_finding(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    run = run_cli("check", tmp_path / "photos", "--format", "json")
    assert run.exit_code == 1
    assert [f["check"] for f in json.loads(run.stdout)["findings"]] == ["too_few_classes"]


def test_report_into_a_missing_folder(small: Path, tmp_path: Path) -> None:
    _one_line_error(run_cli("check", small, "--output", tmp_path / "no" / "report.json"), "cannot write the report")
