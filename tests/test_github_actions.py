"""The GitHub Actions gate: workflows that actionlint accepts, and the action's steps run as GitHub runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import copy_dataset, sample_photos

REPO = Path(__file__).resolve().parents[1]
GATE = REPO / ".github" / "actions" / "retrain-ci" / "gate.sh"


def test_workflows_and_action_pass_actionlint() -> None:
    actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert actionlint, "actionlint is a test dependency: pip install -e '.[test]'"
    workflows = sorted((REPO / ".github" / "workflows").glob("*.yml"))
    assert {w.name for w in workflows} == {"ci.yml", "dataset-gate.yml"}
    result = subprocess.run([actionlint, *map(str, workflows)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def github(tmp_path: Path, flowers_sample: Path) -> dict[str, str]:
    """The environment a composite action's step gets, pointed at temp files."""
    data = copy_dataset(tmp_path / "data", {c: sample_photos(flowers_sample, c, 30) for c in ("daisy", "roses")})
    (tmp_path / "runner").mkdir()
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "RUNNER_TEMP": str(tmp_path / "runner"),
        "GITHUB_OUTPUT": str(tmp_path / "github_output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "step_summary.md"),
        "INPUT_DATA": str(data),
        "INPUT_MODULE": "efficientnet_lite0",
        "INPUT_FAIL_ON": "error",
        "INPUT_OUTPUT_DIR": str(tmp_path / "run"),
        "INPUT_BASELINE": str(tmp_path / "baseline" / "metrics.json"),
        "INPUT_MAX_REGRESSION": "0.02",
    }


def _step(step: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(GATE), step], env=env, capture_output=True, text=True, timeout=600)


def test_gate_steps_check_train_and_summarise(github: dict[str, str], tmp_path: Path) -> None:
    check = _step("check", github)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "::error" not in check.stdout

    train = _step("train", {**github, "INPUT_MIN_ACCURACY": "0.5"})
    assert train.returncode == 0, train.stderr
    assert "::notice::no baseline metrics" in train.stdout
    (line,) = Path(github["GITHUB_OUTPUT"]).read_text().splitlines()
    accuracy = float(line.removeprefix("test-accuracy="))
    assert 0.5 <= accuracy <= 1

    summary = _step("summary", github)
    assert summary.returncode == 0, summary.stderr
    job_summary = Path(github["GITHUB_STEP_SUMMARY"]).read_text()
    assert "## retrain-ci report" in job_summary and f"{accuracy:.1%}" in job_summary
    assert "images in 2 classes" in job_summary  # the dataset audit's Markdown follows

    baseline = Path(github["INPUT_BASELINE"])
    baseline.parent.mkdir()
    baseline.write_text(f'{{"test_accuracy": {accuracy + 0.1}}}')
    regressed = _step("train", github)
    assert regressed.returncode == 1
    assert "dropped" in regressed.stderr and "from the baseline's" in regressed.stderr


def test_gate_check_step_annotates_and_fails_on_errors(github: dict[str, str]) -> None:
    data = Path(github["INPUT_DATA"])
    (data / "roses" / "notes.jpg").write_text("not a photo")
    check = _step("check", github)
    assert check.returncode == 1
    assert "::error file=" in check.stdout and "notes.jpg" in check.stdout
