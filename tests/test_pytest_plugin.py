"""The pytest plugin: `pytest --retrain-data DIR` turns each dataset check into a test item of its own."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from retrain.core.errors import InputError  # noqa: F401  (the plugin's package must import without TensorFlow)

pytest_plugins = ["pytester"]


@pytest.fixture
def project(pytester: pytest.Pytester, bottleneck_dir: Path) -> pytest.Pytester:
    """A user's project whose settings share this session's bottleneck cache."""
    pytester.makefile(".toml", **{"retrain-ci": f'bottleneck-dir = "{bottleneck_dir}"\n'})
    return pytester


def _check_ids() -> list[str]:
    from datacheck.registry import selected_checks

    return [check.id for check in selected_checks()]


def test_clean_sample_passes_every_check_item(project: pytest.Pytester, flowers_sample: Path) -> None:
    result = project.runpytest_subprocess(f"--retrain-data={flowers_sample}", "--junitxml=j.xml")
    result.assert_outcomes(passed=len(_check_ids()))
    cases = {
        (case.get("classname"), case.get("name")) for case in ElementTree.parse(project.path / "j.xml").iter("testcase")
    }
    assert cases == {("datacheck", check_id) for check_id in _check_ids()}
    result.stdout.fnmatch_lines(["*DatasetFindingWarning*"])  # 40 photos a class: below the 100 the tutorial asks


def test_planted_defect_fails_exactly_its_item(project: pytest.Pytester, flowers_sample: Path) -> None:
    data = project.path / "photos"
    shutil.copytree(flowers_sample, data)
    photo = next((data / "roses").glob("*.jpg"))
    (data / "roses" / "truncated.jpg").write_bytes(photo.read_bytes()[:500])
    result = project.runpytest_subprocess(f"--retrain-data={data}")
    result.assert_outcomes(passed=len(_check_ids()) - 1, failed=1)
    result.stdout.fnmatch_lines(["FAILED datacheck::corrupt_image*"])
    result.stdout.fnmatch_lines(["*roses/truncated.jpg*"])


def test_keyword_selects_dataset_checks(project: pytest.Pytester, flowers_sample: Path) -> None:
    result = project.runpytest_subprocess(f"--retrain-data={flowers_sample}", "-k", "exact_duplicates", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["datacheck::exact_duplicates PASSED*"])


def test_accuracy_item_fails_below_the_threshold(
    project: pytest.Pytester, flowers_sample: Path, bottleneck_dir: Path
) -> None:
    """The option's threshold, and the settings file's gate as `retrain-ci train` reads it."""
    settings = f'bottleneck-dir = "{bottleneck_dir}"\nmin-class-recall = 0.9999\n'
    project.makefile(".toml", **{"retrain-ci": settings})
    result = project.runpytest_subprocess(
        f"--retrain-data={flowers_sample}", "--retrain-min-accuracy", "0.999", "-k", "min_accuracy"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*accuracy * is below --min-accuracy 0.9990*", "*## retrain-ci report*"])
    result.stdout.fnmatch_lines(["*recall below --min-class-recall 0.9999*"])


def test_fixtures_for_users_own_tests_and_ini_setting(project: pytest.Pytester, flowers_sample: Path) -> None:
    project.makeini(f"[pytest]\nretrain_data = {flowers_sample}\n")
    project.makepyfile(
        test_mine="""
        def test_every_class_has_test_images(retrain_dataset):
            tested = {image.label_index for image in retrain_dataset.split("testing")}
            assert tested == set(range(len(retrain_dataset.labels)))

        def test_no_errors(retrain_audit):
            assert retrain_audit.counts()["error"] == 0
        """
    )
    result = project.runpytest_subprocess("-k", "test_every or test_no_errors")
    result.assert_outcomes(passed=2)


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
