"""The common contract of every registered check, run on the same datasets (as scikit-learn's common tests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

import datacheck.checks  # noqa: F401  (registers every check)
from datacheck.audit import audit_data
from datacheck.findings import Severity
from datacheck.registry import CHECKS, AuditData
from retrain.core.settings import AuditSettings, ModuleSettings
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
