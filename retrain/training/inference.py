"""Classifying images with an exported model: SavedModel folder, frozen graph (.pb) or TensorFlow Lite (.tflite)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from retrain.core.dataset import is_image_file
from retrain.core.errors import InputError
from retrain.core.images import ImageDecodeError, load_image
from retrain.core.settings import FROZEN_INPUT_NAME, ExportSettings
from retrain.training.export import graph_labels, tflite_labels
from retrain.training.features import tflite_interpreter

BATCH_SIZE = 32
# The file the train command writes next to its models; a .pb or .tflite file without labels of its own uses it.
LABELS_FILE_NAME = "output_labels.txt"
# Labels shown in a mismatch message, of each side.
LABELS_SHOWN = 6


@dataclass
class ExportedModel:
    """Any exported classifier, as: float images in [0, 1] of ``image_size`` -> probabilities over ``labels``."""

    path: Path
    labels: tuple[str, ...]
    image_size: tuple[int, int]
    predict: Callable[[np.ndarray], np.ndarray]


@dataclass
class Classified:
    """Probabilities for the images that could be read, row-aligned with ``paths``; the rest in ``skipped``."""

    paths: list[Path]
    probabilities: np.ndarray
    skipped: list[tuple[Path, str]]


def load_exported_model(
    path: Path,
    labels_file: Path | None = None,
    input_layer: str = FROZEN_INPUT_NAME,
    output_layer: str = ExportSettings().final_tensor_name,
    image_size: tuple[int | None, int | None] = (None, None),
) -> ExportedModel:
    """Load a model written by ``retrain-ci train`` (or any model of the same shape) and its labels.

    The model's own labels (every export of retrain-ci carries them) are used unless ``labels_file`` is given, and a
    labels file that disagrees with them is refused: another run's labels would name every class wrongly.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"model {path} does not exist")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise InputError(f"{path} is not a SavedModel folder (no saved_model.pb in it)")
        loaded = _saved_model(path)
    elif path.suffix == ".tflite":
        loaded = _tflite(path)
    elif path.suffix == ".pb":
        loaded = _frozen_graph(path, input_layer, output_layer, image_size)
    else:
        raise InputError(
            f"{path}: expected a SavedModel folder, a frozen graph (.pb) or a TensorFlow Lite file (.tflite)"
        )
    model, own_labels, classes = loaded
    model.labels = _labels(path, own_labels, labels_file)
    if classes is not None and len(model.labels) != classes:
        raise InputError(f"{path} scores {classes} classes but its labels file lists {len(model.labels)}")
    return model


def image_files(inputs: Iterable[Path]) -> list[Path]:
    """Image files named directly, plus every image file under the folders named."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files.extend(sorted(p for p in item.rglob("*") if is_image_file(p)))
        elif item.exists():
            files.append(item)
        else:
            raise InputError(f"{item} does not exist")
    return files


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


# What a loader returns: the model (labels still empty), the labels it carries (None if none), its output width.
Loaded = tuple[ExportedModel, tuple[str, ...] | None, int | None]


def _labels(path: Path, own: tuple[str, ...] | None, labels_file: Path | None) -> tuple[str, ...]:
    """The model's own labels, or the labels file given (refused if it disagrees with them)."""
    if labels_file is None:
        if own is not None:
            return own
        if path.is_dir():
            raise InputError(f"SavedModel {path} carries no labels; pass --labels")
        labels_file = _sibling_labels(path)
    labels = _read_labels(labels_file)
    if own is not None and labels != own:
        raise InputError(
            f"labels file {labels_file} does not match the model {path}: the model was trained on {_listed(own)}, "
            f"the file lists {_listed(labels)}; use the labels file written with the model, or none"
        )
    return labels


def _listed(labels: tuple[str, ...]) -> str:
    shown = ", ".join(labels[:LABELS_SHOWN]) + (", ..." if len(labels) > LABELS_SHOWN else "")
    return f"{len(labels)} classes ({shown})"


def _read_labels(path: Path) -> tuple[str, ...]:
    try:
        return tuple(line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip())
    except OSError as error:
        raise InputError(f"cannot read the labels file {path} ({error.strerror})") from None


def _sibling_labels(model_path: Path) -> Path:
    candidate = model_path.parent / LABELS_FILE_NAME
    if not candidate.is_file():
        raise InputError(f"no labels for {model_path}: pass --labels (no {LABELS_FILE_NAME} beside the model)")
    return candidate


def _saved_model(path: Path) -> Loaded:
    model = tf.saved_model.load(str(path))
    serve = model.signatures.get("serving_default")
    if serve is None:
        raise InputError(f"SavedModel {path} has no serving_default signature")
    (input_name, spec), *_ = serve.structured_input_signature[1].items()
    outputs = serve.structured_outputs
    output_spec = outputs["probabilities"] if "probabilities" in outputs else next(iter(outputs.values()))
    own = None
    if hasattr(model, "labels_file"):
        own = _read_labels(Path(model.labels_file.asset_path.numpy().decode()))

    def predict(images: np.ndarray) -> np.ndarray:
        outputs = serve(**{input_name: tf.constant(images)})
        return (outputs["probabilities"] if "probabilities" in outputs else next(iter(outputs.values()))).numpy()

    size = (int(spec.shape[1]), int(spec.shape[2]))
    return ExportedModel(path, (), size, predict), own, output_spec.shape[-1]


def _frozen_graph(path: Path, input_layer: str, output_layer: str, size: tuple[int | None, int | None]) -> Loaded:
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception:
        raise InputError(f"{path} is not a frozen TensorFlow graph") from None
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    try:
        input_tensor = graph.get_tensor_by_name(f"{input_layer}:0")
        output_tensor = graph.get_tensor_by_name(f"{output_layer}:0")
    except KeyError as error:
        raise InputError(f"{path}: {error.args[0]}; check --input-layer / --output-layer") from None
    declared = input_tensor.shape
    height = size[0] or (declared[1] if declared.rank == 4 else None)
    width = size[1] or (declared[2] if declared.rank == 4 else None)
    if height is None or width is None:
        raise InputError(f"{path} does not declare its input size; pass --input-height and --input-width")
    session = tf.compat.v1.Session(graph=graph)
    classes = output_tensor.shape[-1] if output_tensor.shape.rank else None
    model = ExportedModel(
        path, (), (int(height), int(width)), lambda images: session.run(output_tensor, {input_tensor: images})
    )
    return model, graph_labels(graph_def), classes


def _tflite(path: Path) -> Loaded:
    content = path.read_bytes()
    interpreter = tflite_interpreter(content, num_threads=2)
    input_detail = interpreter.get_input_details()[0]
    output_detail = interpreter.get_output_details()[0]
    _, height, width, _ = input_detail["shape"]

    def predict(images: np.ndarray) -> np.ndarray:
        if interpreter.get_input_details()[0]["shape"][0] != len(images):
            interpreter.resize_tensor_input(input_detail["index"], [len(images), height, width, 3])
            interpreter.allocate_tensors()
        interpreter.set_tensor(input_detail["index"], images.astype(np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(output_detail["index"]).copy()

    model = ExportedModel(path, (), (int(height), int(width)), predict)
    return model, tflite_labels(content), int(output_detail["shape"][-1])
