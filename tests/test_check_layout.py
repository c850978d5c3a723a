"""`retrain-ci check` for people, as linters print: in an 80-column CI log and in a wide terminal, a heading per check
with its count and what to do, then one line per finding that starts with its whole path."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from retrain.core.display import printable
from tests.conftest import DefectiveDataset, run_cli

CHEAP = ("--skip", "suspected_mislabel,shortcut_bias,outlier", "--no-bottlenecks")
REPO = Path(__file__).resolve().parents[1]
LONG_NAME = "a-photo-whose-name-alone-is-longer-than-a-log-line-" + "x" * 40 + ".jpg"
NAMES = {"error": "error", "warning": "warning", "info": "note"}


@pytest.fixture(scope="module")
def dataset(defective_dataset: DefectiveDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The defective dataset plus a dark photo whose path is longer than 80 columns."""
    root = tmp_path_factory.mktemp("layout") / "photos"
    shutil.copytree(defective_dataset.root, root)
    shutil.copy(root / "daisy" / "dark.jpg", root / "daisy" / LONG_NAME)
    return root


@pytest.fixture(scope="module")
def findings(dataset: Path) -> list[dict]:
    return json.loads(run_cli("check", dataset, *CHEAP, "--format", "json").stdout)["findings"]


def _check_piped(root: Path, columns: int) -> list[str]:
    """``retrain-ci check`` as a CI job runs it: stdout a pipe, the width from COLUMNS."""
    env = {key: value for key, value in os.environ.items() if key != "FORCE_COLOR"}
    env.update(COLUMNS=str(columns), PYTHONPATH=str(REPO))
    run = subprocess.run(
        [sys.executable, "-m", "retrain", "check", str(root), *CHEAP], capture_output=True, text=True, env=env
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "\x1b" not in run.stdout
    return run.stdout.splitlines()


def _by_check(findings: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for finding in findings:
        groups.setdefault(finding["check"], []).append(finding)
    return groups


def _heading(check: str, group: list[dict]) -> str:
    counts = Counter(finding["severity"] for finding in group)
    shown = [f"{counts[s]} {NAMES[s]}{'s' if counts[s] > 1 else ''}" for s in ("error", "warning", "info") if counts[s]]
    return f"{check}: {', '.join(shown)}"


@pytest.mark.parametrize("columns", [80, 200])
def test_each_finding_is_one_line_that_starts_with_its_whole_path(
    dataset: Path, findings: list[dict], columns: int
) -> None:
    lines = _check_piped(dataset, columns)
    groups = _by_check(findings)
    expected = [f"{dataset}/{path}" for group in groups.values() for f in group for path in f["paths"]]
    assert max(map(len, expected)) > 80  # a path a console would wrap
    path_lines = [line.lstrip() for line in lines if line.lstrip().startswith(f"{dataset}/")]
    assert len(path_lines) == len(expected)
    for line, path in zip(path_lines, expected, strict=True):
        assert line == path or line.startswith(f"{path}  "), (line, path)
    too_long = [line for line in lines if len(line) > columns]
    assert all(line.lstrip() in expected for line in too_long), too_long  # only a path alone passes the width
    headings = [line for line in lines if line and not line.startswith((" ", f"{dataset}/"))]
    assert headings[:-1] == [_heading(check, group) for check, group in groups.items()]
    assert re.fullmatch(r"\d+ images in 6 classes: 6 errors, \d+ warnings, \d+ notes \([\d.]+ s\)", headings[-1])
    for check, group in groups.items():
        advice = lines[lines.index(_heading(check, group)) + 1]
        assert advice.startswith("  ") and printable(group[0]["message"]).startswith(advice.strip())
    for dark in (f"{dataset}/daisy/dark.jpg", f"{dataset}/daisy/{LONG_NAME}"):  # details where the width has room
        assert f"{dark}  highlights=0.11" in lines if len(dark) + 17 <= columns else dark in lines
