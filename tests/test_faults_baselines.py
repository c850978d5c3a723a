"""Baselines and audit files from another branch's CI, never trusted: a damaged or forged one is one error line and
exit 2 before any work, and its text reaches no output raw (no workflow command, no Markdown).

Each hostile file is a real audit or run report with one value changed, as a forger would.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliRun, copy_dataset, run_cli, sample_photos

pytest_plugins = ["pytester"]

WORKFLOW_COMMAND = "x\n::error file=README.md::X"
MARKDOWN = "![x](https://evil/x.png) [click](https://evil)\n# Heading\n::error::boom <img src=x>"


@pytest.fixture(scope="module")
def dataset(flowers_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few photos and one broken file, so that the table has a finding and the change line is printed."""
    root = copy_dataset(
        tmp_path_factory.mktemp("baselines") / "photos",
        {label: sample_photos(flowers_sample, label, 4) for label in ("daisy", "roses")},
    )
    (root / "daisy" / "broken.jpg").write_bytes(b"not a jpeg" * 50)
    return root


@pytest.fixture(scope="module")
def audit(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("audit") / "audit.json"
    run = run_cli("check", dataset, "--only", "corrupt_image,tiny_image", "--format", "json", "--output", path)
    assert run.exit_code == 1, run.stdout + run.stderr  # the broken file
    return json.loads(path.read_text())


def _forged(audit: dict[str, Any], tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    document = json.loads(json.dumps(audit))
    change(document)
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(document))
    return path


def _gone(document: dict[str, Any], **values: Any) -> None:
    """The first file as the baseline had it, under a name the dataset no longer has: it counts as removed."""
    document["manifest"][0].update(path="daisy/gone.jpg", **values)


def _finding(document: dict[str, Any], **values: Any) -> None:
    document["findings"][0].update(values)


HOSTILE_AUDITS = {
    "fingerprint as a list": lambda d: _finding(d, fingerprint=["x"]),
    "paths as text": lambda d: _finding(d, paths="daisy/broken.jpg"),
    "an unknown severity": lambda d: _finding(d, severity="fatal"),
    "key as a list": lambda d: _gone(d, key=["k"]),
    "label as a number": lambda d: _gone(d, label=7),
    "label null": lambda d: _gone(d, label=None),
    "a name far too long": lambda d: _gone(d, label="x" * 100_000),
    "images as NaN": lambda d: d["summary"].update(images=float("nan")),
    "seconds as Infinity": lambda d: d["summary"].update(seconds=float("inf")),
    "a negative count": lambda d: d["summary"]["findings"].update(error=-1),
    "change as a number": lambda d: d["summary"].update(change=7),
    "manifest as a table": lambda d: d.update(manifest={}),
}


def _assert_one_error_line(run: CliRun) -> None:
    assert run.exit_code == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, run.stderr


@pytest.mark.parametrize("output_format", ["table", "json", "html", "github"])
@pytest.mark.parametrize("forgery", list(HOSTILE_AUDITS))
def test_check_refuses_a_forged_baseline(
    forgery: str, output_format: str, dataset: Path, audit: dict[str, Any], tmp_path: Path
) -> None:
    baseline = _forged(audit, tmp_path, HOSTILE_AUDITS[forgery])
    output = tmp_path / "out"
    run = run_cli("check", dataset, "--only", "corrupt_image", "--baseline", baseline, "--format", output_format,
                  "--output", output)  # fmt: skip
    _assert_one_error_line(run)
    assert "is damaged" in run.stderr or "is not JSON" in run.stderr
    assert not output.exists()


def test_check_refuses_a_baseline_nested_too_deep(dataset: Path, audit: dict[str, Any], tmp_path: Path) -> None:
    baseline = tmp_path / "deep.json"
    baseline.write_text(json.dumps(audit)[:-1] + ', "extra": ' + "[" * 100_000 + "]" * 100_000 + "}")
    run = run_cli("check", dataset, "--only", "corrupt_image", "--baseline", baseline)
    _assert_one_error_line(run)
    assert "nested too deep" in run.stderr


@pytest.mark.parametrize("output_format", ["table", "github", "markdown"])
def test_a_baseline_class_name_cannot_start_a_workflow_command(
    output_format: str, dataset: Path, audit: dict[str, Any], tmp_path: Path
) -> None:
    baseline = _forged(audit, tmp_path, lambda d: _gone(d, label=WORKFLOW_COMMAND))
    run = run_cli("check", dataset, "--only", "corrupt_image", "--baseline", baseline, "--format", output_format)
    assert run.exit_code == 1, run.stdout + run.stderr  # the broken file, as without the forgery
    ours = ("::error file=", "::warning file=", "::notice title=retrain-ci")
    assert [line for line in run.stdout.splitlines() if line.startswith("::") and not line.startswith(ours)] == []
    assert "\n::error file=README.md" not in run.stdout
    if output_format == "table":
        assert "1 moved x\\n::error file=README.md::X -> daisy" in run.stdout


def test_a_vanished_finding_from_the_baseline_is_plain_text_in_markdown(
    dataset: Path, audit: dict[str, Any], tmp_path: Path
) -> None:
    def fixed(document: dict[str, Any]) -> None:
        document["findings"].append(
            {**document["findings"][0], "check": "x`\n::error::", "message": MARKDOWN, "fingerprint": "x:1"}
        )

    run = run_cli("check", dataset, "--only", "corrupt_image", "--baseline", _forged(audit, tmp_path, fixed),
                  "--format", "markdown")  # fmt: skip
    # Its file is untouched: gone from the audit without the change touching it, it vanished (shifted), not fixed.
    fixed_line = next(line for line in run.stdout.splitlines() if line.startswith("- **vanished**"))
    assert fixed_line.endswith(
        "!\\[x\\](https://evil/x.png) \\[click\\](https://evil)\\\\n\\# Heading\\\\n::error::boom &lt;img src=x> "
        "(``x`\\n::error::``)"
    )
    headings = [line for line in run.stdout.splitlines() if line.startswith(("::", "#"))]
    assert headings == [f"## Dataset check: `{dataset}`", "### `corrupt_image` (1)"]


def test_report_refuses_a_forged_audit(trained_run: CliRun, audit: dict[str, Any], tmp_path: Path) -> None:
    report = shutil.copytree(trained_run.output_dir / "report", tmp_path / "report")
    for forgery in ("fingerprint as a list", "label null", "images as NaN", "change as a number"):
        forged = _forged(audit, tmp_path, HOSTILE_AUDITS[forgery])
        _assert_one_error_line(run_cli("report", report, "--audit", forged, "--print-summary"))


def test_an_audits_change_line_is_plain_text_in_the_summary(
    trained_run: CliRun, audit: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = shutil.copytree(trained_run.output_dir / "report", tmp_path / "report")
    forged = _forged(audit, tmp_path, lambda d: d["summary"].update(change=MARKDOWN))
    step_summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    run = run_cli("report", report, "--audit", forged, "--print-summary", "--github-step-summary")
    assert run.exit_code == 0, run.stdout + run.stderr
    for text in (run.stdout, step_summary.read_text(), (report / "summary.md").read_text()):
        assert "![" not in text and "](" not in text.replace("\\](", "") and "<img" not in text
        assert [line for line in text.splitlines() if line.startswith(("#", "::"))] == ["## retrain-ci report"]
        assert "**Change:** !\\[x\\](https://evil/x.png) \\[click\\](https://evil)\\\\n\\# Heading" in text


def _forged_run(trained_run: CliRun, tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """The trained run's report with one value of its metrics.json changed (and no predictions, unless they match)."""
    folder = shutil.copytree(trained_run.output_dir / "report", tmp_path / "baseline")
    metrics = json.loads((folder / "metrics.json").read_text())
    change(metrics)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "predictions.csv").unlink()
    return folder


def _first_class(metrics: dict[str, Any], **values: Any) -> None:
    metrics["per_class"][next(iter(metrics["per_class"]))].update(values)


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.update(test_accuracy=float("nan")),
        lambda m: _first_class(m, recall=float("nan")),
        lambda m: _first_class(m, support=float("nan")),
        lambda m: _first_class(m, support=1e400),
        lambda m: _first_class(m, recall=1.5),
    ],
    ids=["accuracy NaN", "recall NaN", "support NaN", "support 1e400", "recall 150%"],
)
def test_train_refuses_a_forged_baseline_run_before_training(
    change: Callable[[dict[str, Any]], None], trained_run: CliRun, dataset: Path, tmp_path: Path
) -> None:
    baseline = _forged_run(trained_run, tmp_path, change)
    output_dir = tmp_path / "run"
    run = run_cli("train", dataset, "--output-dir", output_dir, "--baseline", baseline, "--max-regression", "0.02",
                  "--max-class-regression", "0.02")  # fmt: skip
    _assert_one_error_line(run)
    assert "baseline metrics" in run.stderr
    assert not (output_dir / "report").exists()


def test_evaluate_refuses_a_baseline_accuracy_of_nan(trained_run: CliRun, dataset: Path, tmp_path: Path) -> None:
    baseline = _forged_run(trained_run, tmp_path, lambda m: m.update(test_accuracy=float("nan")))
    model = trained_run.output_dir / "saved_model"
    _assert_one_error_line(run_cli("evaluate", model, dataset, "--baseline", baseline, "--max-regression", "0.02"))


def test_a_baseline_class_name_is_escaped_in_the_not_comparable_note(
    trained_run: CliRun, flowers_sample: Path, tmp_path: Path
) -> None:
    def rename_first_class(metrics: dict[str, Any]) -> None:
        first = next(iter(metrics["per_class"]))
        metrics["per_class"] = {WORKFLOW_COMMAND if k == first else k: v for k, v in metrics["per_class"].items()}

    baseline = _forged_run(trained_run, tmp_path, rename_first_class)
    golden = copy_dataset(
        tmp_path / "golden", {label.name: sample_photos(flowers_sample, label.name, 2) for label in
                              sorted(flowers_sample.iterdir())}
    )  # fmt: skip
    run = run_cli("evaluate", trained_run.output_dir / "saved_model", golden, "--baseline", baseline)
    assert run.exit_code == 0, run.stdout + run.stderr
    assert "not comparable photo by photo (classes x\\n::error file=README.md::X," in run.stdout
    assert [line for line in run.stdout.splitlines() if line.startswith("::")] == []


def test_pytest_plugin_with_a_forged_baseline_fails_one_item_and_runs_the_users_tests(
    dataset: Path, audit: dict[str, Any], pytester: pytest.Pytester
) -> None:
    baseline = _forged(audit, pytester.path, HOSTILE_AUDITS["fingerprint as a list"])
    pytester.makepyfile(test_mine="def test_mine():\n    assert True\n")
    result = pytester.runpytest(f"--retrain-data={dataset}", f"--retrain-baseline={baseline}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["error: baseline */forged.json is damaged (findings fingerprint: * is not text)"])
    assert "Traceback" not in result.stdout.str()
