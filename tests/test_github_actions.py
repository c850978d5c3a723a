"""The GitHub Actions gate: workflows that actionlint accepts, and the action's steps run as GitHub runs them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import FLOWERS_SAMPLE, copy_dataset, sample_photos

REPO = Path(__file__).resolve().parents[1]
ACTION = REPO / ".github" / "actions" / "retrain-ci"
GATE = ACTION / "gate.sh"


def test_workflows_and_action_pass_actionlint() -> None:
    actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert actionlint, "actionlint is a test dependency: pip install -e '.[test]'"
    workflows = sorted((REPO / ".github" / "workflows").glob("*.yml"))
    assert {w.name for w in workflows} == {"ci.yml", "dataset-gate.yml"}
    result = subprocess.run([actionlint, *map(str, workflows)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_action_used_is_pinned_to_a_commit_with_its_version_beside_it() -> None:
    """A tag can be moved to other code after review; a commit cannot (GitHub's security hardening guide)."""
    files = [*sorted((REPO / ".github").rglob("*.yml")), REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    uses = [
        (path.name, line.split("uses:", 1)[1].strip())
        for path in files
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.lstrip(" -").startswith("uses:")
    ]
    external = [(name, use) for name, use in uses if not use.startswith(("./", "OWNER/retrain-ci/"))]
    assert len(external) >= 10
    for name, use in external:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}  # v\d+\.\d+\.\d+", use), (name, use)


@pytest.fixture
def github(tmp_path: Path, flowers_sample: Path) -> dict[str, str]:
    """The environment a composite action's step gets, pointed at temp files; the job runs in ``tmp_path``."""
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
        "INPUT_OUTPUT_DIR": "retrain-ci-run",  # as the action's default: relative to the job's folder
        "INPUT_BASELINE": "baseline",
        "INPUT_MAX_REGRESSION": "0.02",
    }


def _step(step: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    job = Path(env["RUNNER_TEMP"]).parent
    return subprocess.run(["bash", str(GATE), step], env=env, cwd=job, capture_output=True, text=True, timeout=600)


def _workflow_step(name: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a ``run:`` step of dataset-gate.yml as the runner would, in the job's folder."""
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "dataset-gate.yml").read_text())
    (script,) = [step["run"] for step in workflow["jobs"]["gate"]["steps"] if step.get("name") == name]
    job = Path(env["RUNNER_TEMP"]).parent
    return subprocess.run(["bash", "-e", "-c", script], env=env, cwd=job, capture_output=True, text=True)


def test_the_dataset_gate_flow_from_main_to_a_pull_request(github: dict[str, str], tmp_path: Path) -> None:
    """dataset-gate.yml end to end: main's run is kept as the baseline; a pull request is judged on its change."""
    modules = Path(github["RUNNER_TEMP"]) / "retrain-ci-modules"  # what the action's backbone cache saves
    gate = _step("gate", {**github, "INPUT_MIN_ACCURACY": "0.5"})
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert "::error" not in gate.stdout and "::notice::no baseline audit at baseline/audit.json" in gate.stdout
    assert "::notice::no baseline report at baseline/report" in gate.stdout
    assert (modules / "modules" / "efficientnet_lite0-v1").is_dir()
    converted = _files(modules)
    audit = tmp_path / "retrain-ci-run" / "audit"
    assert sorted(p.name for p in audit.iterdir()) == [".retrain-ci-output", "audit.html", "audit.json", "audit.md"]
    (line,) = Path(github["GITHUB_OUTPUT"]).read_text().splitlines()
    accuracy = float(line.removeprefix("test-accuracy="))
    assert 0.5 <= accuracy <= 1
    run = tmp_path / "retrain-ci-run"  # a gate exports no model unless `export` asks: it needs the numbers only
    assert not (run / "saved_model").exists() and (run / "report" / "metrics.json").is_file()

    summary = _step("summary", github)
    assert summary.returncode == 0, summary.stderr
    job_summary = Path(github["GITHUB_STEP_SUMMARY"]).read_text()
    assert job_summary.startswith("## retrain-ci report") and f"{accuracy:.1%}" in job_summary
    assert "images in 2 classes" in job_summary  # the dataset audit's Markdown follows

    keep = _workflow_step("Keep this run's audit and report as the baseline for pull requests", github)
    assert keep.returncode == 0, keep.stderr
    assert (tmp_path / "baseline" / "audit.json").is_file()
    assert (tmp_path / "baseline" / "report" / "predictions.csv").is_file()

    # The pull request: two roses added, a daisy moved to roses, a file that is no photo.
    data = Path(github["INPUT_DATA"])
    for photo in sorted((FLOWERS_SAMPLE / "roses").glob("*.jpg"))[30:32]:
        shutil.copy(photo, data / "roses" / photo.name)
    moved = sorted((data / "daisy").glob("*.jpg"))[0]
    shutil.move(moved, data / "roses" / moved.name)
    (data / "roses" / "notes.jpg").write_text("not a photo")
    Path(github["GITHUB_STEP_SUMMARY"]).write_text("")

    gate = _step("gate", github)
    assert gate.returncode == 1  # the corrupt file is new; the old findings do not gate, the model passes
    assert _files(modules) == converted  # the backbone restored by the cache is used, not converted again
    annotations = [line for line in gate.stdout.splitlines() if line.startswith("::error")]
    assert len(annotations) == 1 and "notes.jpg" in annotations[0]
    change = json.loads((audit / "audit.json").read_text())["summary"]["change"]
    assert change.startswith("+3 roses, 1 moved daisy -> roses; caused: 1 error")
    assert "Gate: passed" in gate.stdout and "notes.jpg" in gate.stderr  # trained without it, and said so

    _step("summary", github)
    story = Path(github["GITHUB_STEP_SUMMARY"]).read_text().splitlines()
    assert story[2].startswith("**Change:** +3 roses, 1 moved daisy -> roses; caused: 1 error")
    model = next(line for line in story if line.startswith(("**The ", "**Against the baseline:**")))
    assert " -> " in model.split("accuracy ")[1]

    # A better main branch, as a metrics.json alone: without predictions the whole test sets are compared.
    (data / "roses" / "notes.jpg").unlink()  # so that only the model can fail the gate
    metrics = tmp_path / "baseline" / "report" / "metrics.json"
    inflated = json.loads(metrics.read_text()) | {"test_accuracy": accuracy + 0.1}
    metrics.write_text(json.dumps(inflated))
    (metrics.parent / "predictions.csv").unlink()
    regressed = _step("gate", github)
    assert regressed.returncode == 1
    assert "dropped" in regressed.stderr and "from the baseline's" in regressed.stderr


def _files(folder: Path) -> dict[str, int]:
    """Each file under ``folder`` with its modification time: whether a step wrote anything there."""
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _action_steps() -> dict[str, dict]:
    """The composite action's steps by name (or by the action they use)."""
    action = yaml.safe_load((ACTION / "action.yml").read_text())
    return {step.get("name", step.get("uses")): step for step in action["runs"]["steps"]}


def test_the_action_caches_pip_wheels_and_the_converted_backbone() -> None:
    """A second run neither downloads TensorFlow again nor converts the backbone again."""
    steps = _action_steps()
    order = list(steps)
    pip, backbone = steps["Restore the pip cache"], steps["Restore the converted backbone"]
    assert pip["uses"].startswith("actions/cache@") and backbone["uses"].startswith("actions/cache@")
    assert pip["with"]["path"] == "${{ steps.keys.outputs.pip-dir }}"
    for part in ("steps.python.outputs.python-version", "steps.keys.outputs.requirements", "inputs.executor"):
        assert part in pip["with"]["key"]
    assert order.index("Cache keys") < order.index("Restore the pip cache") < order.index("Install retrain-ci")
    assert backbone["with"]["path"] == "${{ runner.temp }}/retrain-ci-modules"  # gate.sh's RETRAIN_CI_CACHE
    assert "steps.keys.outputs.converter" in backbone["with"]["key"]
    assert order.index("Restore the converted backbone") < order.index("Audit, retrain and gate")


def test_cache_keys_follow_the_requirements_and_the_converter(tmp_path: Path) -> None:
    """gate.sh cache-keys on a copy of the repository: a new dependency changes both keys, converter code one."""
    repo = tmp_path / "repo"
    shutil.copytree(ACTION, repo / ".github" / "actions" / "retrain-ci")
    shutil.copy(REPO / "pyproject.toml", repo)
    shutil.copytree(REPO / "retrain" / "training" / "modules", repo / "retrain" / "training" / "modules")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def keys() -> dict[str, str]:
        output = tmp_path / "github_output"
        output.write_text("")
        script = repo / ".github" / "actions" / "retrain-ci" / "gate.sh"
        run = subprocess.run(["bash", str(script), "cache-keys"], env={**env, "GITHUB_OUTPUT": str(output)})
        assert run.returncode == 0
        return dict(line.split("=", 1) for line in output.read_text().splitlines())

    first = keys()
    assert set(first) == {"pip-dir", "requirements", "converter"} and Path(first["pip-dir"]).is_absolute()
    loading = repo / "retrain" / "training" / "modules" / "loading.py"
    loading.write_text(loading.read_text() + "\nCONVERTED_WITH = 'a changed converter'\n")
    second = keys()
    assert second["requirements"] == first["requirements"] and second["converter"] != first["converter"]
    pyproject = repo / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("dependencies = [", 'dependencies = [\n    "requests>=2",', 1))
    third = keys()
    assert third["requirements"] != second["requirements"] and third["converter"] != second["converter"]


def test_gate_step_annotates_and_fails_on_errors(github: dict[str, str], module_cache: Path) -> None:
    # A later run: the action's cache restores the converted backbone (here, the session's) before the check.
    shutil.copytree(module_cache, Path(github["RUNNER_TEMP"]) / "retrain-ci-modules")
    data = Path(github["INPUT_DATA"])
    (data / "roses" / "notes.jpg").write_text("not a photo")
    gate = _step("gate", github)
    assert gate.returncode == 1
    assert "::error file=" in gate.stdout and "notes.jpg" in gate.stdout
