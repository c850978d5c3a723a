"""`retrain-ci check` for people: in an 80-column CI log and in a wide terminal, the verdict and the counts first, then
per check its count, its advice and a few findings with the values that matter; and no Python repr in any format."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from datacheck.audit_formats import render_table
from datacheck.findings import AuditReport, Finding, Severity
from datacheck.registry import check_class, registered_checks
from retrain.core.display import printable
from tests.conftest import DefectiveDataset, run_cli

CHEAP = ("--skip", "suspected_mislabel,shortcut_bias,outlier", "--no-bottlenecks")
REPO = Path(__file__).resolve().parents[1]
LONG_NAME = "a-photo-whose-name-alone-is-longer-than-a-log-line-" + "x" * 40 + ".jpg"
NAMES = {"error": "error", "warning": "warning", "info": "note"}
# What a Python value looks like when it leaks into text for people instead of being written out.
REPRS = ("{'", "['", "PosixPath(", "np.float", "np.int", "numpy.", "array(", "Severity.", "dtype", "Finding(")
WORDS_FOR_NOTHING = re.compile(r"\b(None|nan|NaN)\b")


@pytest.fixture(scope="module")
def dataset(defective_dataset: DefectiveDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The defective dataset plus seven more dark photos (eight findings of one check), one of them with a path
    longer than 80 columns."""
    root = tmp_path_factory.mktemp("layout") / "photos"
    shutil.copytree(defective_dataset.root, root)
    for index in range(6):
        shutil.copy(root / "daisy" / "dark.jpg", root / "daisy" / f"dark {index}.jpg")
    shutil.copy(root / "daisy" / "dark.jpg", root / "daisy" / LONG_NAME)
    return root


@pytest.fixture(scope="module")
def findings(dataset: Path) -> list[dict]:
    return json.loads(run_cli("check", dataset, *CHEAP, "--format", "json").stdout)["findings"]


def _check_piped(root: Path, columns: int, *options: str) -> list[str]:
    """``retrain-ci check`` as a CI job runs it: stdout a pipe, the width from COLUMNS."""
    env = {key: value for key, value in os.environ.items() if key != "FORCE_COLOR"}
    env.update(COLUMNS=str(columns), PYTHONPATH=str(REPO))
    run = subprocess.run(
        [sys.executable, "-m", "retrain", "check", str(root), *options], capture_output=True, text=True, env=env
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
    counts = {s: sum(f["severity"] == s for f in group) for s in NAMES}
    shown = [f"{counts[s]} {NAMES[s]}{'s' if counts[s] > 1 else ''}" for s in ("error", "warning", "info") if counts[s]]
    return f"{check}: {', '.join(shown)}"


def _listed(lines: list[str], paths: list[str]) -> list[str]:
    """The paths the lines start with (after the indent), in their order: a path, then two spaces and its values."""
    return [
        path
        for line in lines
        for path in paths
        if line.startswith("  ") and f"{line.strip()}  ".startswith(f"{path}  ")
    ]


def _block(lines: list[str], heading: str) -> list[str]:
    """A check's lines under its heading, up to the blank line that ends it."""
    start = lines.index(heading) + 1
    return lines[start : lines.index("", start)]


@pytest.mark.parametrize("columns", [80, 120])
def test_verdict_and_counts_come_first_then_each_check_with_its_advice(
    dataset: Path, findings: list[dict], columns: int
) -> None:
    lines = _check_piped(dataset, columns, *CHEAP)
    errors = sum(f["severity"] == "error" for f in findings)
    assert lines[0] == f"FAILED --fail-on error: {errors} findings at or above error"
    assert re.fullmatch(rf"\d+ images in 6 classes: {errors} errors, \d+ warnings, \d+ notes \([\d.]+ s\)", lines[1])
    assert lines[2] == f"files below are in {dataset}"
    groups = _by_check(findings)
    headings = [line for line in lines[4:] if line and not line.startswith(" ")]
    assert headings == [_heading(check, group) for check, group in groups.items()]
    for check, group in groups.items():
        block = _block(lines, _heading(check, group))
        # The check's own advice, the same whatever its first finding says (too_few_images names no one class).
        assert " ".join(line.strip() for line in block[:2]).startswith(check_class(check).advice)
        paths = [path for finding in group for path in finding["paths"]]
        listed = _listed(block, paths)
        assert listed == paths[: len(listed)]  # in report order, relative to the dataset
        shown = [path for finding in group[:5] for path in finding["paths"]]
        assert set(listed) == set(shown) or len(group) > 5 and set(listed) <= set(shown), check
        if len(group) > 5:
            assert block[-1] == f"  … and {len(group) - 5} more (--verbose or --format json)"
    too_long = [line for line in lines if len(line) > columns]
    assert all(line.strip() == f"daisy/{LONG_NAME}" for line in too_long), too_long  # a path is never cut


def test_verbose_lists_every_finding(dataset: Path, findings: list[dict]) -> None:
    lines = _check_piped(dataset, 80, *CHEAP, "--verbose")
    paths = [path for finding in findings for path in finding["paths"]]
    assert set(_listed(lines, paths)) == set(paths)
    assert not any("more (--verbose" in line for line in lines)


def test_values_that_matter_stay_whole_at_80_columns() -> None:
    """A long path and several values: the likely class and its probability come first and are never cut."""
    path = "tulips/" + "a-long-photo-name-from-a-camera-upload-" * 2 + ".jpg"
    details = dict(given="tulips", likely="sunflowers", given_probability=0.0104, likely_probability=0.9791,
                   typical=0.8061, likely_mislabel=True, rank=1)  # fmt: skip
    finding = Finding("suspected_mislabel", Severity.WARNING, (path,), "very likely mislabelled", details)
    report = AuditReport("photos", [finding], 100, {"tulips": 50, "sunflowers": 50}, ["suspected_mislabel"], 1.0)
    console = Console(file=io.StringIO(), width=80)
    console.print(render_table(report), crop=False)
    lines = console.file.getvalue().splitlines()
    assert lines[0] == "PASSED --fail-on error"
    at = lines.index(f"  {path}")  # wider than the line: alone, whole
    assert lines[at + 1 : at + 3] == ["    likely sunflowers 98% · given tulips 1% (typical 81%)", ""]
    assert all(len(line) <= 80 for line in lines if line.strip() != path)


def test_every_check_has_one_line_of_advice() -> None:
    for check_id, check in registered_checks().items():
        assert 20 <= len(check.advice) <= 78 and "\n" not in check.advice, check_id


@pytest.fixture(scope="module")
def every_format(defective_dataset: DefectiveDataset, bottleneck_dir: Path, tmp_path_factory) -> dict[str, str]:
    """The planted-defects audit with every check (bottlenecks, every suspect) in every format a user can ask for."""
    folder = tmp_path_factory.mktemp("every-format") / "audit"
    options = ("--bottleneck-dir", bottleneck_dir, "--suspects", "all")
    table = run_cli("check", defective_dataset.root, *options, "--report-dir", folder, "--verbose")
    github = run_cli("check", defective_dataset.root, *options, "--format", "github")
    assert table.exit_code == github.exit_code == 1, table.stdout + table.stderr
    outputs = {"table": table.stdout, "github": github.stdout}
    for name, output_format in (("audit.json", "json"), ("audit.md", "markdown"), ("audit.html", "html")):
        outputs[output_format] = (folder / name).read_text(encoding="utf-8")
    return outputs


@pytest.mark.parametrize("output_format", ["table", "json", "markdown", "github", "html"])
def test_no_python_repr_in_any_format(every_format: dict[str, str], output_format: str) -> None:
    text = every_format[output_format]
    document = json.loads(every_format["json"])
    assert len(document["findings"]) >= 20 and text.strip()
    for repr_start in REPRS:
        assert repr_start not in text, (repr_start, text[max(text.find(repr_start) - 200, 0) :][:400])
    if output_format != "json":  # JSON writes nothing as null
        assert not WORDS_FOR_NOTHING.search(text), text[max(WORDS_FOR_NOTHING.search(text).start() - 200, 0) :][:400]


def test_table_shows_the_values_of_the_pairs_and_suspects(every_format: dict[str, str]) -> None:
    document = json.loads(every_format["json"])
    table = " ".join(every_format["table"].split())
    for finding in document["findings"]:
        if finding["check"] == "suspected_mislabel":
            details = finding["details"]
            assert f"likely {printable(details['likely'])} {details['likely_probability']:.0%}" in table
        if finding["check"] == "near_duplicates":
            similarity = [pair["similarity"] for pair in finding["details"]["pairs"] if pair.get("similarity")]
            assert any(f"similarity {value:.2f}" in table for value in similarity) or not similarity
    assert "found by" in table and "points match" in table


def test_no_line_starts_a_workflow_command_whatever_the_names() -> None:
    """Class names and reasons are wrapped and moved to lines of their own, never so that a line starts with one."""
    command = "::error file=README.md::INJECTED"
    details = dict(given="tulips", likely=command, given_probability=0.01, likely_probability=0.98, typical=0.8,
                   likely_mislabel=True, rank=1)  # fmt: skip
    findings = [
        Finding("suspected_mislabel", Severity.WARNING, ("tulips/a.jpg",), "very likely mislabelled", details),
        Finding("corrupt_image", Severity.ERROR, ("tulips/b.jpg",), "bad", {"reason": f"truncated {command} " * 3}),
    ]
    report = AuditReport("photos", findings, 2, {"tulips": 2}, ["suspected_mislabel", "corrupt_image"], 1.0)
    for width in range(30, 121, 7):
        console = Console(file=io.StringIO(), width=width)
        console.print(render_table(report), crop=False)
        text = console.file.getvalue()
        assert command in " ".join(text.split())
        assert not [line for line in text.splitlines() if line.lstrip().startswith("::")], (width, text)
