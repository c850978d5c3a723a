"""What every export format shares: the classifier going out, the model coming back, labels files, the frozen graph.

Each format (``retrain.training.exporters``) carries its labels in the model: the SavedModel as an asset, the frozen
graph as a constant node, the TensorFlow Lite model in its metadata. A model is then never read with another run's
labels file, which a run killed while replacing its outputs, or two runs writing to one folder, could otherwise leave
beside it (``retrain.core.outputs``). The callers stage the paths the formats write to.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from retrain.core.errors import InputError
from retrain.core.results import SoftmaxHead
from retrain.core.settings import FROZEN_INPUT_NAME, ExportSettings
from retrain.training.modules import ImageModule
from retrain.training.tta import mirrored_mean

LABELS_ASSET = "labels.txt"
# Where the frozen graph keeps its labels: a constant node label_image.py never evaluates.
LABELS_NODE = "retrain_ci_labels"


class Classifier(tf.Module):
    """Float images in [0, 1] -> class probabilities; the labels travel with it as an asset.

    With ``tta`` the probabilities are the mean over each image and its mirror image, as the run's test accuracy was
    measured, so the exported model scores what the report says (at twice the inference cost).
    """

    def __init__(
        self,
        module: ImageModule,
        head: SoftmaxHead,
        labels: tuple[str, ...],
        final_tensor_name: str,
        tta: bool = False,
    ) -> None:
        super().__init__()
        self.final_tensor_name = final_tensor_name
        self.tta = tta
        self.labels = tuple(labels)
        # The asset is copied into the SavedModel when it is saved; until then it lives in this scratch folder.
        self._scratch = tempfile.TemporaryDirectory(prefix="retrain-ci-labels-")
        labels_file = Path(self._scratch.name) / LABELS_ASSET
        labels_file.write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
        self.backbone = module.model
        self._module = module
        self.final_weights = tf.Variable(head.weights, name="final_weights")
        self.final_biases = tf.Variable(head.biases, name="final_biases")
        self.labels_file = tf.saved_model.Asset(str(labels_file))
        height, width = module.image_size
        signature = tf.TensorSpec([None, height, width, 3], tf.float32, name="images")
        self.__call__ = tf.function(self._probabilities, input_signature=[signature])
        self.serve = tf.function(
            lambda images: {"probabilities": self._probabilities(images)}, input_signature=[signature]
        )

    @property
    def image_size(self) -> tuple[int, int]:
        return self._module.image_size

    def _probabilities(self, images: tf.Tensor) -> tf.Tensor:
        if not self.tta:
            return tf.nn.softmax(self._logits(images), name=self.final_tensor_name)
        mean = mirrored_mean(lambda both: tf.nn.softmax(self._logits(both)), images)
        return tf.identity(mean, name=self.final_tensor_name)

    def _logits(self, images: tf.Tensor) -> tf.Tensor:
        return tf.matmul(self._module(images), self.final_weights) + self.final_biases


@dataclass
class ModelToExport:
    """A trained classifier as every format takes it; what formats derive from it is derived once, on first use."""

    classifier: Classifier
    quantize: str = "none"  # for the formats that quantize (TensorFlow Lite)
    calibration_images: list[np.ndarray] = field(default_factory=list)  # for int8 quantization

    @cached_property
    def graph_def(self) -> tf.compat.v1.GraphDef:
        """The frozen graph, for the frozen-graph format and TensorBoard alike (freezing copies every weight)."""
        return frozen_graph(self.classifier)


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


def frozen_graph(classifier: Classifier) -> tf.compat.v1.GraphDef:
    """Backbone and new layer inlined as constants, fed through ``Placeholder``, read from the final tensor name.

    The labels ride along as the constant ``LABELS_NODE``, which label_image.py never evaluates.
    """
    graph_def = convert_variables_to_constants_v2(classifier.__call__.get_concrete_function()).graph.as_graph_def()
    (placeholder,) = [node for node in graph_def.node if node.op == "Placeholder"]
    old_name = placeholder.name
    placeholder.name = FROZEN_INPUT_NAME
    for node in graph_def.node:
        for i, name in enumerate(node.input):
            if name.lstrip("^").split(":")[0] == old_name:
                node.input[i] = name.replace(old_name, FROZEN_INPUT_NAME, 1)
    labels = graph_def.node.add(name=LABELS_NODE, op="Const")
    labels.attr["dtype"].type = tf.string.as_datatype_enum
    labels.attr["value"].tensor.CopyFrom(tf.make_tensor_proto([label.encode() for label in classifier.labels]))
    return graph_def


def failed_write_reason(error: tf.errors.OpError) -> str:
    """The operating system's words in TensorFlow's message ("...; No space left on device [Op:SaveV2]")."""
    first_line = error.message.strip().splitlines()[0]
    return re.sub(r"\s*\[Op:\w+\]$", "", first_line.rsplit("; ", 1)[-1])
