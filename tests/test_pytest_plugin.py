"""The pytest plugin: `pytest --retrain-data DIR` makes each dataset finding a test of its own, in junit XML too."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from retrain.core.errors import InputError  # noqa: F401  (the plugin's package must import without TensorFlow)
from tests.conftest import DefectiveDataset, run_cli

pytest_plugins = ["pytester"]


@pytest.fixture
def project(pytester: pytest.Pytester, bottleneck_dir: Path) -> pytest.Pytester:
    """A user's project whose settings share this session's bottleneck cache."""
    pytester.makefile(".toml", **{"retrain-ci": f'bottleneck-dir = "{bottleneck_dir}"\n'})
    return pytester


@pytest.fixture(scope="module")
def planted_audit(defective_dataset: DefectiveDataset, bottleneck_dir: Path) -> dict:
    """`retrain-ci check --format json` on the planted dataset: the findings the items must be, one for one."""
    run = run_cli("check", defective_dataset.root, "--bottleneck-dir", bottleneck_dir, "--format", "json")
    return json.loads(run.stdout)


def _testcases(junit: Path) -> list[ElementTree.Element]:
    return list(ElementTree.parse(junit).iter("testcase"))


def _properties(case: ElementTree.Element) -> list[tuple[str, str]]:
    return [(prop.get("name"), prop.get("value")) for prop in case.iter("property")]


def _clean_checks(audit: dict) -> set[str]:
    return set(audit["summary"]["checks_run"]) - {finding["check"] for finding in audit["findings"]}


def test_planted_dataset_is_one_junit_testcase_per_finding(
    project: pytest.Pytester, defective_dataset: DefectiveDataset, planted_audit: dict
) -> None:
    result = project.runpytest_subprocess(f"--retrain-data={defective_dataset.root}", "--junitxml=j.xml", "-rfx")
    findings = {finding["fingerprint"]: finding for finding in planted_audit["findings"]}
    errors = [finding for finding in findings.values() if finding["severity"] == "error"]
    clean = _clean_checks(planted_audit)
    result.assert_outcomes(failed=len(errors), xfailed=len(findings) - len(errors), passed=len(clean))

    cases = {case.get("name"): case for case in _testcases(project.path / "j.xml")}
    assert set(cases) == set(findings) | clean
    for fingerprint, finding in findings.items():
        case = cases[fingerprint]
        assert _properties(case) == [
            ("check", finding["check"]),
            ("fingerprint", fingerprint),
            ("severity", finding["severity"]),
            *(("path", path) for path in finding["paths"]),
        ]
        if finding["severity"] == "error":  # the file and the advice, as the first line of junit's message
            message = case.find("failure").get("message")
            assert message.startswith(f"{', '.join(finding['paths'])}: {finding['message']}\n")
        else:
            assert case.find("skipped").get("type") == "pytest.xfail"
            assert finding["message"] in case.find("skipped").get("message")
    assert {check for check in clean if cases[check].find("failure") is None} == clean

    truncated = findings[next(f for f in findings if findings[f]["paths"] == ["daisy/truncated.jpg"])]
    result.stdout.fnmatch_lines([f"FAILED datacheck::{truncated['fingerprint']} - daisy/truncated.jpg*"])
    result.stdout.fnmatch_lines(
        ["XFAIL datacheck::tiny_image:* - daisy/thumbnail.jpg: warning, below --fail-on error*"]
    )
    result.stdout.fnmatch_lines([f"to accept it: retrain-ci check {defective_dataset.root} --accept *"])
    assert "pytest_plugin.py" not in result.stdout.str() and "Finding(" not in result.stdout.str()


def test_against_its_own_baseline_each_finding_is_skipped_once_at_its_file(
    project: pytest.Pytester, defective_dataset: DefectiveDataset, planted_audit: dict
) -> None:
    baseline = project.path / "main-audit.json"
    baseline.write_text(json.dumps(planted_audit), encoding="utf-8")
    result = project.runpytest_subprocess(
        f"--retrain-data={defective_dataset.root}", f"--retrain-baseline={baseline}", "-rs"
    )
    result.assert_outcomes(skipped=len(planted_audit["findings"]), passed=len(_clean_checks(planted_audit)))
    truncated = next(f for f in planted_audit["findings"] if f["paths"] == ["daisy/truncated.jpg"])
    result.stdout.fnmatch_lines(
        [f"SKIPPED [[]1[]] */daisy/truncated.jpg:1: unchanged since the baseline: {truncated['fingerprint']}"]
    )
    assert "pytest_plugin.py" not in result.stdout.str()


def test_fail_on_warning_fails_the_warnings_too(
    project: pytest.Pytester, defective_dataset: DefectiveDataset, planted_audit: dict
) -> None:
    severities = [finding["severity"] for finding in planted_audit["findings"]]
    result = project.runpytest_subprocess(
        f"--retrain-data={defective_dataset.root}", "--retrain-fail-on", "warning", "-k", "not min_accuracy"
    )
    result.assert_outcomes(
        failed=severities.count("error") + severities.count("warning"),
        xfailed=severities.count("info"),
        passed=len(_clean_checks(planted_audit)),
    )


def test_clean_sample_passes_its_checks_and_xfails_its_warnings(project: pytest.Pytester, flowers_sample: Path) -> None:
    result = project.runpytest_subprocess(f"--retrain-data={flowers_sample}", "--junitxml=j.xml", "-rx")
    cases = _testcases(project.path / "j.xml")
    assert not [case for case in cases if case.find("failure") is not None]
    xfailed = [case for case in cases if case.find("skipped") is not None]
    result.assert_outcomes(passed=len(cases) - len(xfailed), xfailed=len(xfailed))
    # 40 photos a class: below the 100 the tutorial asks for, a warning under --fail-on error
    result.stdout.fnmatch_lines(["XFAIL datacheck::too_few_images:* - daisy: warning, below --fail-on error*"])
    assert {case.get("classname") for case in cases} == {"datacheck"}


def test_training_is_the_accuracy_items_setup_and_its_outputs_go_where_asked(
    project: pytest.Pytester, flowers_sample: Path, bottleneck_dir: Path
) -> None:
    """One training run: its time on datacheck::min_accuracy, its model and report in --retrain-output, the gate's
    failure in a few lines, and typed reports for the user's own tests, which stay quick."""
    settings = f'bottleneck-dir = "{bottleneck_dir}"\nmin-class-recall = 0.9999\n'
    project.makefile(".toml", **{"retrain-ci": settings})
    project.makepyfile(
        test_mine="""
        from datacheck.findings import AuditReport
        from retrain.core.run_report import RunReport

        def test_plain():
            pass

        def test_audit_is_typed(retrain_audit):
            assert isinstance(retrain_audit, AuditReport)
            assert retrain_audit.counts()["error"] == 0

        def test_run_is_typed(retrain_run, retrain_output):
            assert isinstance(retrain_run, RunReport)
            assert 0 < retrain_run.test_accuracy < 0.999 and not retrain_run.passed
            assert (retrain_output / "report" / "report.html").is_file()
        """
    )
    output = project.path / "model"
    result = project.runpytest_subprocess(
        f"--retrain-data={flowers_sample}", "--retrain-min-accuracy", "0.999", f"--retrain-output={output}",
        "-k", "min_accuracy or test_mine", "--junitxml=j.xml",
    )  # fmt: skip
    result.assert_outcomes(failed=1, passed=3)
    result.stdout.fnmatch_lines(
        [
            "accuracy gate FAILED: accuracy * is below --min-accuracy 99.9*%; recall below --min-class-recall 99.9*%*",
            "test accuracy *: * of * test images right, 5 classes",
            "lowest recall: *",
            f"report: {output}/report/report.html",
        ]
    )
    text = result.stdout.str()
    assert "RunResult(" not in text and "RunReport(" not in text and "## retrain-ci report" not in text
    assert (output / "saved_model").is_dir() and (output / "report" / "metrics.json").is_file()
    result.stdout.fnmatch_lines(
        ["training: * (in the setup of datacheck::min_accuracy)", f"model and report: {output} *"]
    )

    times = {case.get("name"): float(case.get("time")) for case in _testcases(project.path / "j.xml")}
    assert times["min_accuracy"] > 10 * max(
        times["test_plain"], times["test_audit_is_typed"], times["test_run_is_typed"]
    )


def test_fixtures_for_users_own_tests_and_ini_setting(project: pytest.Pytester, flowers_sample: Path) -> None:
    project.makeini(f"[pytest]\nretrain_data = {flowers_sample}\nretrain_output = runs/latest\n")
    project.makepyfile(
        test_mine="""
        def test_output_from_the_ini_file(retrain_output, pytestconfig):
            assert retrain_output == pytestconfig.rootpath / "runs" / "latest"

        def test_every_class_has_test_images(retrain_dataset):
            tested = {image.label_index for image in retrain_dataset.split("testing")}
            assert tested == set(range(len(retrain_dataset.labels)))

        def test_no_errors(retrain_audit):
            assert retrain_audit.counts()["error"] == 0
        """
    )
    result = project.runpytest_subprocess("-k", "test_every or test_no_errors or test_output")
    result.assert_outcomes(passed=3)


def test_fixtures_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        [
            "retrain_audit [[]session scope[]] -- *",
            "    The audit of --retrain-data (datacheck.findings.AuditReport)*",
            "retrain_output [[]session scope[]] -- *",
            "retrain_run [[]session scope[]] -- *",
            "*(retrain.core.run_report.RunReport)*",
        ]
    )


def test_keyword_selects_dataset_checks_and_the_users_fixtures_reach_them(
    project: pytest.Pytester, flowers_sample: Path
) -> None:
    """A user's module-scoped autouse fixture applies to the datacheck items too; the outputs' default folder."""
    project.makeconftest(
        """
        import pytest

        @pytest.fixture(autouse=True, scope="module")
        def per_module():
            yield
        """
    )
    project.makepyfile(
        test_mine="""
        def test_output_is_under_the_basetemp(retrain_output, tmp_path_factory):
            assert retrain_output == tmp_path_factory.getbasetemp() / "retrain-ci"
        """
    )
    result = project.runpytest_subprocess(f"--retrain-data={flowers_sample}", "-k", "exact_duplicates or output", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["datacheck::exact_duplicates PASSED*"])


def test_without_data_the_plugin_adds_nothing_and_imports_no_tensorflow(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_plain="""
        import sys

        def test_plain(request):
            assert request.config.pluginmanager.has_plugin("retrain_ci")
            assert "tensorflow" not in sys.modules
        """
    )
    result = project.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert " retrain-ci -" not in result.stdout.str()  # no summary section
