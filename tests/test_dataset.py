"""Datasets: labels like the tutorial's, every image format, and splits that never move."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from retrain.core.dataset import label_name, list_dataset, scan_folder, split_for
from retrain.core.errors import InputError


def test_labels_are_normalised_like_the_tutorial() -> None:
    assert label_name("Sun--Flowers (2019)") == "sun flowers 2019"
    assert label_name("roses") == "roses"


def test_split_depends_only_on_the_file_name_before_nohash() -> None:
    splits = set()
    for i in range(50):
        expected = split_for(f"person{i}_nohash_0.jpg", 10, 10)
        assert split_for(f"/a/b/person{i}_nohash_1.jpg", 10, 10) == expected
        assert split_for(f"/elsewhere/person{i}_nohash_2.png", 10, 10) == expected
        splits.add(expected)
    assert splits == {"training", "validation", "testing"}


def test_split_is_the_tutorials_sha1_bucket() -> None:
    # Computed with the tutorial's own create_image_lists() code on these base names: the split of a photo must not
    # change across versions of this tool or machines (the tutorial hashed the whole path, which moved files around).
    assert split_for("/x/10172636503_21bededa75_n.jpg", 10, 10) == "testing"
    assert split_for("/y/10172379554_b296050f82_n.jpg", 10, 10) == "training"
    assert split_for("/z/100080576_f52e8ee070_n.jpg", 10, 10) == "validation"


def test_split_percentages_hold_over_many_files() -> None:
    counts = Counter(split_for(f"img_{i}.jpg", 20, 15) for i in range(20000))
    assert abs(counts["testing"] / 20000 - 0.20) < 0.01
    assert abs(counts["validation"] / 20000 - 0.15) < 0.01


def test_every_supported_extension_in_any_case_is_listed(tmp_path: Path) -> None:
    for label, extensions in {"Cats": ["JPG", "jpeg", "Png"], "dogs": ["bmp", "GIF", "webp"]}.items():
        (tmp_path / label).mkdir()
        for i, extension in enumerate(extensions * 7):
            Image.new("RGB", (8, 8)).save(tmp_path / label / f"{label}{i}.{extension}", format=_format(extension))
        (tmp_path / label / "README.txt").write_text("not an image")
    dataset = list_dataset(tmp_path)
    assert dataset.labels == ("cats", "dogs")
    assert len(dataset.images) == 42
    assert {image.path.suffix for image in dataset.images} == {".JPG", ".jpeg", ".Png", ".bmp", ".GIF", ".webp"}


def _format(extension: str) -> str:
    return {"jpg": "JPEG", "jpeg": "JPEG"}.get(extension.lower(), extension.upper())


def test_scan_keeps_what_training_would_refuse_or_ignore(tmp_path: Path) -> None:
    for name in ("roses/a.jpg", "roses/nested/b.PNG", "roses/notes.txt", "roses/.DS_Store", "tulips/readme.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "stray.jpg").write_bytes(b"")
    (tmp_path / ".hidden").mkdir()
    scan = scan_folder(tmp_path)
    roses, tulips = scan.classes
    assert [p.relative_to(tmp_path).as_posix() for p in roses.images] == ["roses/a.jpg", "roses/nested/b.PNG"]
    assert [p.name for p in roses.other_files] == ["notes.txt"]
    assert (tulips.label, tulips.images, [p.name for p in tulips.other_files]) == ("tulips", (), ["readme.md"])
    assert [p.name for p in scan.stray_files] == ["stray.jpg"]
    with pytest.raises(InputError, match="tulips has no images"):
        list_dataset(tmp_path)
