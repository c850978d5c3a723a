"""Image-folder datasets: class labels, image listing and the tutorial's stable train/validation/test split."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Generic, TypeVar

from retrain.core.display import is_undecodable
from retrain.core.errors import InputError
from retrain.core.settings import SplitSettings

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
# The tutorial hashes into this many buckets; keeping the constant keeps every split identical to retrain.py's.
MAX_NUM_IMAGES_PER_CLASS = 2**27 - 1
T = TypeVar("T")


@dataclass(frozen=True)
class Splits(Generic[T]):
    """One value for each split (its images, vectors, ...), as fields, so that a misspelt split fails at once."""

    training: T
    validation: T
    testing: T

    @classmethod
    def of(cls, value_for: Callable[[str], T]) -> Splits[T]:
        """Each split's value from its name, computed in ``SPLITS`` order."""
        return cls(*(value_for(name) for name in SPLITS))


# The names ``split_for`` gives, on disk and in JSON; the fields of ``Splits``.
SPLITS = tuple(field.name for field in fields(Splits))


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
    skipped: tuple[tuple[Path, str], ...] = ()  # files left out before any is read, with the reason
    skipped_links: tuple[tuple[Path, str], ...] = ()  # links left out (``link_problem``), with the reason

    def split(self, name: str) -> list[LabeledImage]:
        return [image for image in self.images if image.split == name]

    def count(self, split: str, label_index: int) -> int:
        return sum(1 for image in self.split(split) if image.label_index == label_index)


def label_name(folder_name: str) -> str:
    """The tutorial's label normalisation, for every script: lower case, each run of characters other than letters,
    marks and digits becomes one space (``Sun--Flowers`` -> ``sun flowers``, ``Тюльпаны`` -> ``тюльпаны``).

    NFC first, so that ``café`` is one label whether the file system stores the accent composed (Linux) or not (macOS).
    """
    name = unicodedata.normalize("NFC", folder_name)
    kept = (char if unicodedata.category(char)[0] in "LMN" else " " for char in name)
    return " ".join("".join(kept).lower().split())


def split_for(path: Path | str, testing_percentage: float, validation_percentage: float) -> str:
    """Which split a file belongs to, from a hash of its name alone, so it never moves between runs or machines.

    Anything after ``_nohash_`` is ignored, so that photos of one subject (``bob_nohash_1.jpg``, ``bob_nohash_2.jpg``)
    land in the same split and the model cannot score by recognising the subject rather than the class.
    """
    hash_name = re.sub(r"_nohash_.*$", "", Path(path).name)
    # The name's bytes: UTF-8 for every valid name (the tutorial's hash), the raw bytes for one that is not.
    hashed = int(hashlib.sha1(os.fsencode(hash_name)).hexdigest(), 16)
    percentage_hash = (hashed % (MAX_NUM_IMAGES_PER_CLASS + 1)) * (100.0 / MAX_NUM_IMAGES_PER_CLASS)
    if percentage_hash < validation_percentage:
        return "validation"
    if percentage_hash < testing_percentage + validation_percentage:
        return "testing"
    return "training"


def link_problem(path: Path, root: Path) -> str | None:
    """Why a link is not followed, or None: a link is followed only to a target inside the dataset folder ``root``.

    A link that dangles, loops or leaves the dataset would make the data depend on what lies elsewhere on this
    machine (and silently lose a class or its images on the next), so it is skipped and reported instead.
    """
    if not path.is_symlink():
        return None
    target = os.readlink(path)
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return f"it points to {target}, which leads back to a link (a link loop)"
        return f"it points to {target}, which does not exist (a dangling link)"
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
        return f"it points to {target}, outside the dataset folder"
    return None


@dataclass(frozen=True)
class ClassFolder:
    folder: Path
    label: str
    images: tuple[Path, ...]
    other_files: tuple[Path, ...]  # files training ignores: not an image extension
    undecodable: tuple[Path, ...] = ()  # files training skips: the name is not valid UTF-8, so no report could show it
    special: tuple[Path, ...] = ()  # FIFOs, sockets and devices: never opened (a FIFO waits for a writer forever)


@dataclass(frozen=True)
class FolderScan:
    """What an image folder holds, as it is: empty classes and stray files included, nothing rejected."""

    root: Path
    classes: tuple[ClassFolder, ...]
    stray_files: tuple[Path, ...]  # files directly in the root, which belong to no class
    unreadable_folders: tuple[tuple[Path, str], ...] = ()  # class folders or subfolders that cannot be listed, and why
    skipped_links: tuple[tuple[Path, str], ...] = ()  # links not followed (``link_problem``), and why

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
    be listed are named in ``unreadable_folders``, and links not followed in ``skipped_links``, rather than skipped
    without a word.
    """
    if not root.exists():
        raise InputError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; give a folder with one subfolder of images per class")
    try:
        entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    except OSError as error:
        raise InputError(f"cannot read image folder {root}: {error.strerror or error}") from error
    links = [(p, problem) for p in entries if (problem := link_problem(p, root))]
    skipped = {p for p, _ in links}
    folders = [p for p in entries if p not in skipped and p.is_dir()]
    stray = tuple(p for p in entries if p not in skipped and p.is_file())
    classes = []
    unreadable: list[tuple[Path, str]] = []
    for folder in folders:
        entries = _files_under(folder, root, unreadable, links)
        inside = len(str(folder)) + 1  # the entries' names below ``folder``, without a relative_to each
        undecodable = {p for p in entries if is_undecodable(str(p)[inside:])}
        special = tuple(p for p, regular in entries.items() if p not in undecodable and not regular)
        files = [p for p, regular in entries.items() if p not in undecodable and regular]
        images = tuple(p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
        others = tuple(p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS)
        label = label_name(folder.name)
        classes.append(ClassFolder(folder, label, images, others, tuple(sorted(undecodable)), special))
    return FolderScan(root, tuple(classes), stray, tuple(unreadable), tuple(sorted(links)))


def _files_under(
    folder: Path, root: Path, unreadable: list[tuple[Path, str]], links: list[tuple[Path, str]]
) -> dict[Path, bool]:
    """Every entry under ``folder`` that is not a folder nor hidden, sorted, each with whether it is a regular file
    (the others are FIFOs, sockets or devices, for the caller to report); folders that cannot be listed go to
    ``unreadable``. The kinds come from the directory listing itself, so 100,000 photos cost no stat each.

    Links inside the dataset are followed, once per target folder (a link back up would list the class forever);
    every other link goes to ``links`` with the reason.
    """
    real_folder = os.path.realpath(folder)
    listed = {real_folder}
    files: dict[Path, bool] = {}

    def listed_in(parent: Path) -> list[Path]:
        """List ``parent``: keep its files, say its bad links; return the subfolders to list, in name order."""
        try:
            with os.scandir(parent) as listing:
                entries = list(listing)
        except OSError as error:
            unreadable.append((Path(error.filename or parent), error.strerror or str(error)))
            return []
        subfolders = sorted((entry for entry in entries if _is_dir(entry)), key=lambda entry: entry.name)
        followed = []
        for entry in subfolders:
            path = parent / entry.name
            problem = link_problem(path, root) if entry.is_symlink() else None
            if problem is None and entry.is_symlink() and _lists_again(os.path.realpath(path), listed, real_folder):
                problem = f"it points to {os.readlink(path)}, a folder this class already lists (a link loop)"
            if problem is None:
                listed.add(os.path.realpath(path))
                followed.append(path)
            elif not entry.name.startswith("."):
                links.append((path, problem))
        for entry in entries:
            if entry.name.startswith(".") or _is_dir(entry):
                continue
            path = parent / entry.name
            if entry.is_symlink() and (problem := link_problem(path, root)):
                links.append((path, problem))
            else:
                files[path] = _is_file(entry)
        return followed

    pending = [folder]  # top down, each folder's subfolders in name order, as os.walk(followlinks=True) lists them
    while pending:
        pending.extend(reversed(listed_in(pending.pop())))
    return dict(sorted(files.items(), key=lambda item: item[0].parts))  # Path order, without Path comparisons


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _lists_again(target: str, listed: set[str], real_folder: str) -> bool:
    """A folder link to one already listed, or to the class folder or above it, which holds the link itself."""
    return target in listed or os.path.commonpath([target, real_folder]) == target


def list_dataset(root: Path, split: SplitSettings = SplitSettings()) -> Dataset:
    """List a folder with one subfolder of images per class and assign every image its split."""
    scan = scan_folder(root)
    scan.require_readable()
    if len(scan.classes) < 2:
        raise InputError(
            f"{root} has {len(scan.classes)} class folder(s); retraining needs at least 2 "
            "(one subfolder of images per class)"
        )
    labels = _labels(scan)
    images = []
    for label_index, folder in enumerate(scan.classes):
        if not folder.images:
            raise InputError(f"class folder {folder.folder} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        images.extend(
            LabeledImage(p, label_index, split_for(p, split.testing_percentage, split.validation_percentage))
            for p in folder.images
        )
    skipped = tuple(
        [(p, UNDECODABLE_REASON) for folder in scan.classes for p in folder.undecodable]
        + [(p, SPECIAL_FILE_REASON) for folder in scan.classes for p in folder.special]
    )
    dataset = Dataset(root, labels, tuple(images), skipped, scan.skipped_links)
    _require_usable_splits(dataset, split)
    return dataset


UNDECODABLE_REASON = "its name is not valid UTF-8 (shown with backslash escapes): rename it"
SPECIAL_FILE_REASON = "not a regular file (a FIFO, device or socket), so it is not read"


def _labels(scan: FolderScan) -> tuple[str, ...]:
    """One distinct, non-empty label per class folder, or the InputError that says which folder to rename."""
    for folder in scan.classes:
        if is_undecodable(folder.folder.name):
            raise InputError(f"the name of class folder {folder.folder} is not valid UTF-8; rename it")
        if not folder.label:
            raise InputError(
                f"class folder {folder.folder} has no letter or digit in its name, so its label would be empty; "
                "rename it"
            )
    labels = [folder.label for folder in scan.classes]
    clashes = [label for label, n in Counter(labels).items() if n > 1]
    if clashes:
        raise InputError(f"several class folders normalise to the same label {clashes[0]!r}; rename one of them")
    return tuple(labels)


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


def dataset_fingerprint(dataset: Dataset, images: list[LabeledImage], content_keys: list[str]) -> str:
    """SHA-1 over every image's class, relative path and content key: changes whenever the data a model sees changes.

    The content keys are the ones the bottleneck cache already computed, so no file is read twice.
    """
    digest = hashlib.sha1()
    for image, key in sorted(zip(images, content_keys, strict=True), key=lambda pair: pair[0].path):
        digest.update(f"{dataset.labels[image.label_index]}\0{image.path.relative_to(dataset.root)}\0{key}\0".encode())
    return digest.hexdigest()
