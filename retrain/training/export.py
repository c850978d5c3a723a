"""What every export format shares: the model going out and coming back, and labels files.

Each format (``retrain.training.exporters``) carries its labels in the model: the SavedModel as an asset, the frozen
graph as a constant node, the TensorFlow Lite model in its metadata. A model is then never read with another run's
labels file, which a run killed while replacing its outputs, or two runs writing to one folder, could otherwise leave
beside it (``retrain.core.outputs``). The callers stage the paths the formats write to.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from retrain.core.errors import InputError
from retrain.core.settings import FROZEN_INPUT_NAME, ExportSettings

if TYPE_CHECKING:  # the formats load TensorFlow when they write or read a model, not when a run lists them
    import tensorflow as tf

    from retrain.training.classifier import Classifier

LABELS_ASSET = "labels.txt"
# Where the frozen graph keeps its labels: a constant node label_image.py never evaluates.
LABELS_NODE = "retrain_ci_labels"


@dataclass
class ModelToExport:
    """A trained classifier as every format takes it; what formats derive from it is derived once, on first use."""

    classifier: Classifier
    quantize: str = "none"  # for the formats that quantize (TensorFlow Lite)
    calibration_images: list[np.ndarray] = field(default_factory=list)  # for int8 quantization

    @cached_property
    def graph_def(self) -> tf.compat.v1.GraphDef:
        """The frozen graph, for the frozen-graph format and TensorBoard alike (freezing copies every weight)."""
        return self.classifier.frozen_graph()


@dataclass
class ExportedModel:
    """Any exported classifier, as: float images in [0, 1] of ``image_size`` -> probabilities over ``labels``."""

    path: Path
    labels: tuple[str, ...]
    image_size: tuple[int, int]
    predict: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LoadOptions:
    """How to read a model that does not say it itself (a frozen graph's tensor names and input size)."""

    input_layer: str = FROZEN_INPUT_NAME
    output_layer: str = ExportSettings().final_tensor_name
    image_size: tuple[int | None, int | None] = (None, None)


def write_labels(labels: list[str] | tuple[str, ...], path: Path) -> None:
    """One label per line, in class-index order (the tutorial's output_labels.txt)."""
    Path(path).write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")


def read_labels(path: Path) -> tuple[str, ...]:
    """A labels file as ``write_labels`` writes it (blank lines and surrounding spaces ignored)."""
    try:
        return tuple(line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip())
    except OSError as error:
        raise InputError(f"cannot read the labels file {path} ({error.strerror})") from None


def failed_write_reason(error: tf.errors.OpError) -> str:
    """The operating system's words in TensorFlow's message ("...; No space left on device [Op:SaveV2]")."""
    first_line = error.message.strip().splitlines()[0]
    return re.sub(r"\s*\[Op:\w+\]$", "", first_line.rsplit("; ", 1)[-1])
