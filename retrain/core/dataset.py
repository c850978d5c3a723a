"""Image-folder datasets: class labels, image listing and the tutorial's stable train/validation/test split."""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from retrain.core.errors import InputError
from retrain.core.settings import SplitSettings

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
# The tutorial hashes into this many buckets; keeping the constant keeps every split identical to retrain.py's.
MAX_NUM_IMAGES_PER_CLASS = 2**27 - 1
SPLITS = ("training", "validation", "testing")


@dataclass(frozen=True)
class LabeledImage:
    path: Path
    label_index: int
    split: str


@dataclass(frozen=True)
class Dataset:
    root: Path
    labels: tuple[str, ...]
    images: tuple[LabeledImage, ...]

    def split(self, name: str) -> list[LabeledImage]:
        return [image for image in self.images if image.split == name]

    def count(self, split: str, label_index: int) -> int:
        return sum(1 for image in self.split(split) if image.label_index == label_index)


def label_name(folder_name: str) -> str:
    """The tutorial's label normalisation: lower case, each run of non-alphanumerics becomes one space."""
    return re.sub(r"[^a-z0-9]+", " ", folder_name.lower()).strip()


def split_for(path: Path | str, testing_percentage: float, validation_percentage: float) -> str:
    """Which split a file belongs to, from a hash of its name alone, so it never moves between runs or machines.

    Anything after ``_nohash_`` is ignored, so that photos of one subject (``bob_nohash_1.jpg``, ``bob_nohash_2.jpg``)
    land in the same split and the model cannot score by recognising the subject rather than the class.
    """
    hash_name = re.sub(r"_nohash_.*$", "", Path(path).name)
    hashed = int(hashlib.sha1(hash_name.encode("utf-8")).hexdigest(), 16)
    percentage_hash = (hashed % (MAX_NUM_IMAGES_PER_CLASS + 1)) * (100.0 / MAX_NUM_IMAGES_PER_CLASS)
    if percentage_hash < validation_percentage:
        return "validation"
    if percentage_hash < testing_percentage + validation_percentage:
        return "testing"
    return "training"


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def class_folders(root: Path) -> list[Path]:
    """The class subfolders of an image-folder dataset, in label-index order (sorted by name, as the tutorial)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


@dataclass(frozen=True)
class ClassFolder:
    folder: Path
    label: str
    images: tuple[Path, ...]
    other_files: tuple[Path, ...]  # files training ignores: not an image extension


@dataclass(frozen=True)
class FolderScan:
    """What an image folder holds, as it is: empty classes and stray files included, nothing rejected."""

    root: Path
    classes: tuple[ClassFolder, ...]
    stray_files: tuple[Path, ...]  # files directly in the root, which belong to no class
    unreadable_folders: tuple[tuple[Path, str], ...] = ()  # class folders or subfolders that cannot be listed, and why

    def require_readable(self) -> None:
        """Refuse a dataset with a folder that cannot be listed: a gate must not silently train on less data."""
        if self.unreadable_folders:
            folder, reason = self.unreadable_folders[0]
            more = f" (and {len(self.unreadable_folders) - 1} more)" if len(self.unreadable_folders) > 1 else ""
            raise InputError(
                f"cannot read folder {folder}{more}: {reason}; its images would be left out: fix its permissions "
                "(e.g. chmod -R a+rX) or move it out of the dataset"
            )


def scan_folder(root: Path) -> FolderScan:
    """List every class folder with its image and other files; the base of both training and the dataset audit.

    Hidden files and folders (``.DS_Store``, ``.git``) are left out, as training leaves them out. Folders that cannot
    be listed are named in ``unreadable_folders`` rather than skipped without a word.
    """
    if not root.exists():
        raise InputError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; give a folder with one subfolder of images per class")
    try:
        folders = class_folders(root)
        stray = tuple(sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")))
    except OSError as error:
        raise InputError(f"cannot read image folder {root}: {error.strerror or error}") from error
    classes = []
    unreadable: list[tuple[Path, str]] = []
    for folder in folders:
        files = _files_under(folder, unreadable)
        images = tuple(p for p in files if is_image_file(p))
        others = tuple(p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS)
        classes.append(ClassFolder(folder, label_name(folder.name), images, others))
    return FolderScan(root, tuple(classes), stray, tuple(unreadable))


def _files_under(folder: Path, unreadable: list[tuple[Path, str]]) -> list[Path]:
    """Every file under ``folder`` not itself hidden, sorted; folders that cannot be listed go to ``unreadable``."""

    def on_error(error: OSError) -> None:
        unreadable.append((Path(error.filename), error.strerror or str(error)))

    files = [Path(parent) / name for parent, _, names in os.walk(folder, onerror=on_error) for name in names]
    return sorted(p for p in files if not p.name.startswith(".") and p.is_file())


def list_dataset(root: Path, split: SplitSettings = SplitSettings()) -> Dataset:
    """List a folder with one subfolder of images per class and assign every image its split."""
    scan = scan_folder(root)
    scan.require_readable()
    if len(scan.classes) < 2:
        raise InputError(
            f"{root} has {len(scan.classes)} class folder(s); retraining needs at least 2 "
            "(one subfolder of images per class)"
        )
    labels = [folder.label for folder in scan.classes]
    clashes = [label for label, n in Counter(labels).items() if n > 1]
    if clashes:
        raise InputError(f"several class folders normalise to the same label {clashes[0]!r}; rename one of them")
    images = []
    for label_index, folder in enumerate(scan.classes):
        if not folder.images:
            raise InputError(f"class folder {folder.folder} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        images.extend(
            LabeledImage(p, label_index, split_for(p, split.testing_percentage, split.validation_percentage))
            for p in folder.images
        )
    dataset = Dataset(root, tuple(labels), tuple(images))
    _require_usable_splits(dataset, split)
    return dataset


def _require_usable_splits(dataset: Dataset, settings: SplitSettings) -> None:
    for label_index, label in enumerate(dataset.labels):
        if dataset.count("training", label_index) == 0:
            raise InputError(f"class {label!r} has no training images under the current split; add images")
    for split, percentage, flag in (
        ("validation", settings.validation_percentage, "--validation-percentage"),
        ("testing", settings.testing_percentage, "--testing-percentage"),
    ):
        if not dataset.split(split):
            raise InputError(
                f"no image falls in the {split} split at {flag} {percentage:g}; add images or raise {flag}"
            )


def fingerprint(dataset: Dataset, images: list[LabeledImage], content_keys: list[str]) -> str:
    """SHA-1 over every image's class, relative path and content key: changes whenever the data a model sees changes.

    The content keys are the ones the bottleneck cache already computed, so no file is read twice.
    """
    digest = hashlib.sha1()
    for image, key in sorted(zip(images, content_keys, strict=True), key=lambda pair: pair[0].path):
        digest.update(f"{dataset.labels[image.label_index]}\0{image.path.relative_to(dataset.root)}\0{key}\0".encode())
    return digest.hexdigest()
