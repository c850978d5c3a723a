"""The classifier going out: the backbone and the new layer as one TensorFlow module, and its frozen graph.

Only a run that exports a model (or fine-tunes, or computes bottlenecks with TensorFlow) builds one, so only such a run
imports TensorFlow.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from retrain.core.results import SoftmaxHead
from retrain.core.settings import FROZEN_INPUT_NAME
from retrain.training.export import LABELS_ASSET, LABELS_NODE
from retrain.training.modules import ImageModule
from retrain.training.tta import mirrored_mean


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

    def frozen_graph(self) -> tf.compat.v1.GraphDef:
        """Backbone and new layer inlined as constants, fed through ``Placeholder``, read from the final tensor name.

        The labels ride along as the constant ``LABELS_NODE``, which label_image.py never evaluates.
        """
        graph_def = convert_variables_to_constants_v2(self.__call__.get_concrete_function()).graph.as_graph_def()
        (placeholder,) = [node for node in graph_def.node if node.op == "Placeholder"]
        old_name = placeholder.name
        placeholder.name = FROZEN_INPUT_NAME
        for node in graph_def.node:
            for i, name in enumerate(node.input):
                if name.lstrip("^").split(":")[0] == old_name:
                    node.input[i] = name.replace(old_name, FROZEN_INPUT_NAME, 1)
        labels = graph_def.node.add(name=LABELS_NODE, op="Const")
        labels.attr["dtype"].type = tf.string.as_datatype_enum
        labels.attr["value"].tensor.CopyFrom(tf.make_tensor_proto([label.encode() for label in self.labels]))
        return graph_def
