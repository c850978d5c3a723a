"""The common contract of every registered check, run on the same datasets (as scikit-learn's common tests)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

import datacheck.checks  # noqa: F401  (registers every check)
import datacheck.properties
from datacheck.audit import audit_data, audit_dataset
from datacheck.findings import Severity
from datacheck.properties import columns, measured_row, measurements, property_cache
from datacheck.registry import CHECKS, AuditData, wants_bottlenecks
from datacheck.settings import AuditSettings
from retrain.app.audit import audit_settings
from retrain.core.settings import ModuleSettings, flat_fields
from retrain.training.bottlenecks import bottleneck_source
from tests.conftest import DefectiveDataset
from tests.defects import truncated


@pytest.fixture(scope="module")
def audits(
    defective_dataset: DefectiveDataset, flowers_sample: Path, bottleneck_dir: Path, tmp_path_factory
) -> list[AuditData]:
    """The defective dataset, one where every image is corrupt, oversized or an LFS pointer, and one with a single
    class."""
    broken = tmp_path_factory.mktemp("broken") / "photos"
    for label in ("daisy", "roses"):
        (broken / label).mkdir(parents=True)
        truncated(next((flowers_sample / label).glob("*.jpg")), broken / label / "half.jpg")
        (broken / label / "text.png").write_text("not a PNG")
        (broken / label / "pointer.jpg").write_text("version https://git-lfs.github.com/spec/v1\nsize 12345\n")
        Image.new("1", (5000, 5000)).save(broken / label / "huge.png")  # over the decoding budget
    single = tmp_path_factory.mktemp("single") / "photos"
    (single / "daisy").mkdir(parents=True)
    for photo in sorted((flowers_sample / "daisy").glob("*.jpg"))[:12]:
        shutil.copy(photo, single / "daisy" / photo.name)
    settings = AuditSettings(module=ModuleSettings(bottleneck_dir=bottleneck_dir))
    source = bottleneck_source(settings.module)
    return [audit_data(root, settings, bottlenecks=source) for root in (defective_dataset.root, broken, single)]


def test_every_check_of_the_issue_is_registered() -> None:
    issue_4 = """corrupt_image non_image_file stray_file empty_class too_few_images class_imbalance split_starved
        exact_duplicates conflicting_labels near_duplicates split_leakage tiny_image odd_aspect_ratio dark light blurry
        low_information grayscale suspected_mislabel shortcut_bias"""
    issue_15 = "oversized_image lfs_pointer unreadable_folder"
    issue_18 = "overexposed outlier"
    assert set(issue_4.split()) | set(issue_15.split()) | set(issue_18.split()) <= set(CHECKS)


@pytest.mark.parametrize("check_id", sorted(CHECKS))
def test_check_contract(check_id: str, audits: list[AuditData]) -> None:
    """Findings of its own id only, well-formed, on paths that exist; never an exception, even on corrupt files."""
    for data in audits:
        for finding in CHECKS[check_id]().run(data):
            assert finding.check == check_id
            assert isinstance(finding.severity, Severity)
            assert finding.message
            json.dumps(finding.details)  # details must survive the JSON report
            for path in finding.paths:
                assert not Path(path).is_absolute() and (data.scan.root / path).exists(), path


@dataclasses.dataclass
class _NoSettings:
    """A check without settings of its own."""


def _another(value: object, choices: tuple = ()) -> object:
    """A valid value other than the default, of its type (another of its choices, for a setting that has some)."""
    if choices:
        return next(choice for choice in choices if choice != value)
    if isinstance(value, bool):
        return not value
    return value * 2 + 1 if isinstance(value, int | float) else f"{value}x"


# Every check's own settings, as (check id, flat name).
SETTINGS = [(check.id, f.name) for check in CHECKS.values() for f in dataclasses.fields(check.settings or _NoSettings)]
CHOICES = {
    f.name: f.metadata.get("choices", ())
    for check in CHECKS.values()
    for f in dataclasses.fields(check.settings or _NoSettings)
}


@pytest.mark.parametrize(("check_id", "name"), SETTINGS)
def test_a_checks_settings_are_set_by_flat_name(check_id: str, name: str, tmp_path: Path) -> None:
    """A check's own setting is an audit setting like any other: by replace, and in the settings file, with dashes."""
    value = _another(getattr(AuditSettings(), name), CHOICES[name])
    assert getattr(AuditSettings().replace(**{name: value}), name) == value
    toml = "true" if value is True else "false" if value is False else repr(value)
    for key in (name, name.replace("_", "-")):
        (tmp_path / "retrain-ci.toml").write_text(f"{key} = {toml}\n")
        assert getattr(audit_settings(tmp_path / "retrain-ci.toml", {}), name) == value
    assert name in flat_fields(AuditSettings)


def test_the_moved_pixel_checks_declare_their_settings_and_measurements() -> None:
    assert {f.name for f in dataclasses.fields(CHECKS["overexposed"].settings)} == {"overexposed_clipped"}
    assert [m.name for m in CHECKS["blurry"].measurements] == ["sharpness"]
    assert {"clipped", "sharpness"} <= set(columns())


@pytest.mark.parametrize("measurement", [m.name for m in measurements()])
def test_changing_a_measurements_version_renames_the_property_cache(measurement: str, monkeypatch) -> None:
    """Cached rows of the old measurement are then never read: every image is measured again."""
    before = property_cache(AuditSettings()).directory
    bumped = tuple(
        dataclasses.replace(m, version=m.version + 1) if m.name == measurement else m for m in measurements()
    )
    monkeypatch.setattr(datacheck.properties, "measurements", lambda: bumped)
    after = property_cache(AuditSettings()).directory
    assert after != before and after.parent == before.parent


@pytest.mark.parametrize("check_id", sorted(CHECKS))
def test_every_measured_column_is_in_the_one_pass(check_id: str, flowers_sample: Path) -> None:
    photo = next((flowers_sample / "daisy").glob("*.jpg"))
    row = measured_row(photo, photo.stat().st_size)
    for measurement in CHECKS[check_id].measurements:
        assert all(isinstance(row[column], float) for column in measurement.columns), row


@pytest.mark.parametrize("check_id", sorted(CHECKS))
def test_a_checks_findings_are_described_for_reports(check_id: str, audits: list[AuditData]) -> None:
    """What reports show beside a finding and each of its files comes from its check, as (name, value) pairs."""
    check = CHECKS[check_id]
    for data in audits:
        for finding in check().run(data):
            assert all(isinstance(name, str) for name, _ in check.describe(finding.details))
            for path in finding.paths:
                assert all(isinstance(name, str) for name, _ in check.per_path(finding.details, path))
            assert check.missing_picture(finding.details) in (None, f"no picture: {finding.details.get('reason')}")
            score = check.score(finding.details)  # the audit page sorts by it
            assert score is None or (isinstance(score, int | float) and not isinstance(score, bool)), score


def test_only_near_duplicates_finds_what_the_default_audit_finds(
    defective_dataset: DefectiveDataset, bottleneck_dir: Path
) -> None:
    """near_duplicates finds more with bottlenecks: alone, it asks for them as the default audit has them."""
    settings = AuditSettings(module=ModuleSettings(bottleneck_dir=bottleneck_dir))
    source = bottleneck_source(settings.module)
    default = audit_dataset(defective_dataset.root, settings, bottlenecks=source)
    alone = audit_dataset(defective_dataset.root, settings.replace(only=("near_duplicates",)), bottlenecks=source)
    assert alone.bottlenecks is not None
    assert alone.findings == [finding for finding in default.findings if finding.check == "near_duplicates"]
    assert any("embedding" in finding.details["matched_by"] for finding in alone.findings)


def test_which_selections_want_bottlenecks() -> None:
    assert wants_bottlenecks(AuditSettings())
    assert wants_bottlenecks(AuditSettings(only=("near_duplicates",)))
    assert not wants_bottlenecks(AuditSettings(only=("near_duplicates",), use_bottlenecks=False))
    assert wants_bottlenecks(AuditSettings(only=("outlier",), use_bottlenecks=False))
    assert not wants_bottlenecks(AuditSettings(only=("dark", "overexposed", "blurry")))
