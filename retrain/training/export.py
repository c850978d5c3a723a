"""Writing a run's outputs: labels file, SavedModel, frozen graph (for label_image.py) and TensorFlow Lite model.

Each model carries its labels: the SavedModel as an asset, the frozen graph as a constant node, the TensorFlow Lite
model in its metadata. A model is then never read with another run's labels file, which a run killed while replacing
its outputs, or two runs writing to one folder, could otherwise leave beside it (``retrain.core.outputs``). The
callers stage the paths these functions write to.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import flatbuffers
import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as tflite_schema
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from retrain.core.results import SoftmaxHead
from retrain.core.settings import FROZEN_INPUT_NAME
from retrain.training.modules import ImageModule

LABELS_ASSET = "labels.txt"
# Where the frozen graph and the TensorFlow Lite model keep their labels (one label per line in the metadata).
LABELS_NODE = "retrain_ci_labels"
LABELS_METADATA = b"retrain_ci_labels"


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
        both = tf.nn.softmax(self._logits(tf.concat([images, tf.reverse(images, axis=[2])], axis=0)))
        plain, mirrored = tf.split(both, 2, axis=0)
        return tf.identity((plain + mirrored) / 2, name=self.final_tensor_name)

    def _logits(self, images: tf.Tensor) -> tf.Tensor:
        return tf.matmul(self._module(images), self.final_weights) + self.final_biases


def write_labels(labels: list[str] | tuple[str, ...], path: Path) -> None:
    """One label per line, in class-index order (the tutorial's output_labels.txt)."""
    Path(path).write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")


def export_saved_model(classifier: Classifier, directory: Path) -> None:
    """A SavedModel with a ``serving_default`` signature (``images`` -> ``probabilities``), as TF Serving expects."""
    with _write_errors():
        tf.saved_model.save(classifier, str(directory), signatures={"serving_default": classifier.serve})


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


def graph_labels(graph_def: tf.compat.v1.GraphDef) -> tuple[str, ...] | None:
    """The labels a frozen graph carries; None for a graph exported elsewhere (or by an earlier version)."""
    for node in graph_def.node:
        if node.name == LABELS_NODE:
            return tuple(label.decode() for label in tf.make_ndarray(node.attr["value"].tensor).tolist())
    return None


def export_frozen_graph(graph_def: tf.compat.v1.GraphDef, path: Path) -> None:
    Path(path).write_bytes(graph_def.SerializeToString())


def export_tflite(classifier: Classifier, path: Path, quantize: str, calibration_images: list[np.ndarray]) -> None:
    """TensorFlow Lite flatbuffer; ``int8`` quantization is calibrated on the given (training) images."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [classifier.__call__.get_concrete_function()], classifier
    )
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        converter.representative_dataset = lambda: ([image[None]] for image in calibration_images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    Path(path).write_bytes(_with_labels(converter.convert(), classifier.labels))


def tflite_labels(model: bytes) -> tuple[str, ...] | None:
    """The labels a TensorFlow Lite model carries in its metadata; None for one exported elsewhere."""
    root = tflite_schema.Model.GetRootAs(model, 0)
    for i in range(root.MetadataLength()):
        entry = root.Metadata(i)
        if entry.Name() == LABELS_METADATA:
            return tuple(root.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode().split("\n"))
    return None


def _with_labels(model: bytes, labels: tuple[str, ...]) -> bytes:
    """The flatbuffer with one more metadata entry (a name and a buffer), which interpreters ignore."""
    unpacked = tflite_schema.ModelT.InitFromObj(tflite_schema.Model.GetRootAs(model, 0))
    buffer = tflite_schema.BufferT()
    buffer.data = np.frombuffer("\n".join(labels).encode(), dtype=np.uint8)
    unpacked.buffers.append(buffer)
    entry = tflite_schema.MetadataT()
    entry.name, entry.buffer = LABELS_METADATA, len(unpacked.buffers) - 1
    unpacked.metadata = [*(unpacked.metadata or []), entry]
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(unpacked.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@contextmanager
def _write_errors() -> Iterator[None]:
    """TensorFlow reports a failed write (a full disk) as its own error; the output staging expects an OSError."""
    try:
        yield
    except tf.errors.OpError as error:
        raise OSError(failed_write_reason(error)) from None


def failed_write_reason(error: tf.errors.OpError) -> str:
    """The operating system's words in TensorFlow's message ("...; No space left on device [Op:SaveV2]")."""
    first_line = error.message.strip().splitlines()[0]
    return re.sub(r"\s*\[Op:\w+\]$", "", first_line.rsplit("; ", 1)[-1])
