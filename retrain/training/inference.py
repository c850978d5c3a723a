"""Classifying images with an exported model, in any format of ``retrain.training.exporters``, and its labels."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrain.core.dataset import IMAGE_EXTENSIONS
from retrain.core.errors import InputError
from retrain.core.images import ImageDecodeError, load_image
from retrain.training.export import ExportedModel, LoadOptions, read_labels
from retrain.training.exporters import exporter_for

BATCH_SIZE = 32
# The file the train command writes next to its models; a .pb or .tflite file without labels of its own uses it.
LABELS_FILE_NAME = "output_labels.txt"
# Labels shown in a mismatch message, of each side.
LABELS_SHOWN = 6
LOAD_OPTIONS = LoadOptions()


@dataclass
class Classified:
    """Probabilities for the images that could be read, row-aligned with ``paths``; the rest in ``skipped``."""

    paths: list[Path]
    probabilities: np.ndarray
    skipped: list[tuple[Path, str]]


def load_exported_model(
    path: Path,
    labels_file: Path | None = None,
    input_layer: str = LOAD_OPTIONS.input_layer,
    output_layer: str = LOAD_OPTIONS.output_layer,
    image_size: tuple[int | None, int | None] = LOAD_OPTIONS.image_size,
) -> ExportedModel:
    """Load a model written by ``retrain-ci train`` (or any model of the same shape) and its labels.

    The model's own labels (every export of retrain-ci carries them) are used unless ``labels_file`` is given, and a
    labels file that disagrees with them is refused: another run's labels would name every class wrongly.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"model {path} does not exist")
    exporter = exporter_for(path)
    model, classes = exporter.load(path, LoadOptions(input_layer, output_layer, image_size))
    model.labels = _labels(path, exporter.labels(path), labels_file)
    if classes is not None and len(model.labels) != classes:
        raise InputError(f"{path} scores {classes} classes but its labels file lists {len(model.labels)}")
    return model


def image_files(inputs: Iterable[Path]) -> list[Path]:
    """Image files named directly, plus every file with an image extension under the folders named.

    A FIFO, device or socket named directly is refused without being opened (opening a FIFO waits for a writer);
    one inside a folder is listed, and ``classify`` skips it with its reason, as any file it cannot read.
    """
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files.extend(sorted(p for p in item.rglob("*") if _has_image_name(p)))
        elif item.is_file():
            files.append(item)
        elif item.exists():
            raise InputError(f"{item} is not a regular file (a FIFO, device or socket); name image files or folders")
        else:
            raise InputError(f"{item} does not exist")
    return files


def _has_image_name(path: Path) -> bool:
    """A file named as an image, regular or not (decoding says why a FIFO is not read); never a folder."""
    named = path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
    return named and path.exists() and not path.is_dir()


def classify(
    model: ExportedModel, paths: list[Path], on_progress: Callable[[int, int], None] | None = None
) -> Classified:
    """Decode (EXIF orientation applied) and classify in batches; unreadable files are skipped, not fatal."""
    kept: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    batches: list[np.ndarray] = []
    for start in range(0, len(paths), BATCH_SIZE):
        images = []
        for path in paths[start : start + BATCH_SIZE]:
            try:
                images.append(load_image(path, model.image_size))
                kept.append(path)
            except ImageDecodeError as error:
                skipped.append((path, str(error.__cause__ or error)))
        if images:
            batches.append(model.predict(np.stack(images)))
        if on_progress:
            on_progress(min(start + BATCH_SIZE, len(paths)), len(paths))
    probabilities = np.concatenate(batches) if batches else np.zeros((0, len(model.labels)), np.float32)
    return Classified(kept, probabilities, skipped)


def _labels(path: Path, own: tuple[str, ...] | None, labels_file: Path | None) -> tuple[str, ...]:
    """The model's own labels, or the labels file given (refused if it disagrees with them)."""
    if labels_file is None:
        if own is not None:
            return own
        if path.is_dir():
            raise InputError(f"SavedModel {path} carries no labels; pass --labels")
        labels_file = _sibling_labels(path)
    labels = read_labels(labels_file)
    if own is not None and labels != own:
        raise InputError(
            f"labels file {labels_file} does not match the model {path}: the model was trained on {_listed(own)}, "
            f"the file lists {_listed(labels)}; use the labels file written with the model, or none"
        )
    return labels


def _listed(labels: tuple[str, ...]) -> str:
    shown = ", ".join(labels[:LABELS_SHOWN]) + (", ..." if len(labels) > LABELS_SHOWN else "")
    return f"{len(labels)} classes ({shown})"


def _sibling_labels(model_path: Path) -> Path:
    candidate = model_path.parent / LABELS_FILE_NAME
    if not candidate.is_file():
        raise InputError(f"no labels for {model_path}: pass --labels (no {LABELS_FILE_NAME} beside the model)")
    return candidate
