"""Fine-tuning (``--fine-tune``): after the new layer has learned from cached bottlenecks, train it together with the
top blocks of the backbone, end to end on augmented training images.

Only bundled backbones can be fine-tuned: their blocks are ours to split, so the frozen bottom runs forward only and
gradients flow through the top blocks alone. Batch norm is folded into the convolutions, so its statistics stay frozen
by construction. Images are decoded batch by batch while the previous batch trains, never all held at once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from retrain.dataset import LabeledImage
from retrain.distortions import Distortions
from retrain.images import load_pixels, to_float
from retrain.modules import ImageModule
from retrain.modules.efficientnet_lite import EfficientNetLite
from retrain.training import SoftmaxHead

# Images per step of fine-tuning, and per batch when predicting with the fine-tuned network.
BATCH_SIZE = 32
# Fine-tuned networks see images this much larger than the backbone's own input size: finer detail, measured better.
DEFAULT_SIZE_FACTOR = 1.25


@dataclass(frozen=True)
class FineTuneConfig:
    """``--fine-tune-*`` settings; the defaults are what measured best on flowers-dev (``benchmarks/accuracy.py``)."""

    blocks: int = 5
    epochs: int = 12
    learning_rate: float = 0.003
    # The new layer learns this many times faster than the blocks: its inputs move as the blocks adapt (and from the
    # bottlenecks' input size to the fine-tuning one), while the blocks only need a nudge from ImageNet's weights.
    layer_learning_rate_factor: float = 10.0
    image_size: int | None = None  # None: DEFAULT_SIZE_FACTOR times the backbone's, a multiple of 8
    label_smoothing: float = 0.1
    dropout: float = 0.2
    # Crops from 62% to 100% of the image side (scale 60%, no fixed margin), so training also sees whole photos.
    augmentation: Distortions = field(
        default_factory=lambda: Distortions(flip_left_right=True, random_crop=0, random_scale=60, random_brightness=30)
    )

    def input_size(self, backbone_size: int) -> int:
        return self.image_size or round(backbone_size * DEFAULT_SIZE_FACTOR / 8) * 8


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    train_accuracy: float
    train_cross_entropy: float
    validation_accuracy: float
    validation_cross_entropy: float
    seconds: float


@dataclass
class FineTuned:
    """The fine-tuned backbone (as a module to export) and layer, from the epoch with the best validation score."""

    module: ImageModule
    head: SoftmaxHead
    epochs: list[EpochResult]  # epoch 0 is the layer trained on bottlenecks, before fine-tuning
    best_epoch: int
    tta: bool
    validation_probabilities: np.ndarray  # of the validation images, in the order given, at the kept epoch

    def probabilities(self, paths: Sequence[Path]) -> np.ndarray:
        """Class probabilities of image files, as the exported model gives them."""
        weights, biases = tf.constant(self.head.weights), tf.constant(self.head.biases)
        with ThreadPoolExecutor(max_workers=2) as pool:
            return Predictor(self.module.model, weights, biases, self.tta)(paths, pool)


class Predictor:
    """Class probabilities of image files under a network and layer, optionally averaged with the mirror images."""

    def __init__(self, network: EfficientNetLite, weights: tf.Tensor, biases: tf.Tensor, tta: bool) -> None:
        self.size = (network.image_size, network.image_size)

        @tf.function(input_signature=[tf.TensorSpec([None, *self.size, 3], tf.float32)])
        def probabilities(images: tf.Tensor) -> tf.Tensor:
            plain = tf.nn.softmax(tf.matmul(network.__call__(images), weights) + biases)
            if not tta:
                return plain
            return (
                plain + tf.nn.softmax(tf.matmul(network.__call__(tf.reverse(images, axis=[2])), weights) + biases)
            ) / 2

        self._probabilities = probabilities

    def __call__(self, paths: Sequence[Path], pool: ThreadPoolExecutor) -> np.ndarray:
        batches = [list(paths[i : i + BATCH_SIZE]) for i in range(0, len(paths), BATCH_SIZE)]
        pixels = _prefetched(pool, batches, self.load)
        return np.concatenate([self._probabilities(to_float(batch)).numpy() for batch in pixels])

    def load(self, batch: list[Path]) -> np.ndarray:
        return np.stack([load_pixels(path, self.size) for path in batch])


def fine_tune(
    module: ImageModule,
    network: EfficientNetLite,
    head: SoftmaxHead,
    train_images: Sequence[LabeledImage],
    validation_images: Sequence[LabeledImage],
    config: FineTuneConfig,
    seed: int,
    tta: bool,
    on_progress: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> FineTuned:
    """Train the top ``config.blocks`` blocks and the layer; keep the epoch with the best validation accuracy."""
    generator = tf.random.Generator.from_seed(seed)
    shuffle = np.random.default_rng(seed)
    start = max(0, len(network.blocks) - config.blocks)
    weights = tf.Variable(head.weights, name="final_weights")
    biases = tf.Variable(head.biases, name="final_biases")
    backbone_variables = network.top_variables(start)  # the top blocks and the head convolution
    trainable = [*backbone_variables, weights, biases]
    steps_per_epoch = max(1, len(train_images) // BATCH_SIZE)
    total_steps = steps_per_epoch * config.epochs

    def optimizer(peak: float) -> tf.keras.optimizers.Optimizer:
        return tf.keras.optimizers.SGD(tf.keras.optimizers.schedules.CosineDecay(peak, total_steps), momentum=0.9)

    backbone_optimizer = optimizer(config.learning_rate)
    layer_optimizer = optimizer(config.learning_rate * config.layer_learning_rate_factor)
    size = (network.image_size, network.image_size)
    class_count = head.biases.shape[0]

    @tf.function
    def train_step(pixels: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images = config.augmentation.apply(tf.cast(pixels, tf.float32) / 255.0, size, generator)
        frozen = tf.stop_gradient(network.bottom(images, start))
        with tf.GradientTape() as tape:
            features = network.top(frozen, start)
            if config.dropout > 0:
                features = tf.nn.experimental.stateless_dropout(features, config.dropout, generator.make_seeds(1)[:, 0])
            logits = tf.matmul(features, weights) + biases
            smoothing = config.label_smoothing
            targets = tf.one_hot(labels, class_count) * (1 - smoothing) + smoothing / class_count
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(targets, logits))
        gradients = tape.gradient(loss, trainable)
        backbone_gradients, layer_gradients = gradients[: len(backbone_variables)], gradients[len(backbone_variables) :]
        backbone_optimizer.apply_gradients(zip(backbone_gradients, backbone_variables, strict=True))
        layer_optimizer.apply_gradients(zip(layer_gradients, [weights, biases], strict=True))
        correct = tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels)
        accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))
        return accuracy, loss

    predict = Predictor(network, weights, biases, tta)
    decode_size = config.augmentation.decode_size(size)
    validation_paths = [image.path for image in validation_images]
    validation_labels = np.array([image.label_index for image in validation_images])
    train_labels = np.array([image.label_index for image in train_images], dtype=np.int32)

    def load_training_batch(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.stack([load_pixels(train_images[row].path, decode_size) for row in rows]), train_labels[rows]

    validations: list[np.ndarray] = []  # validation probabilities, one array per epoch
    with ThreadPoolExecutor(max_workers=2) as pool:

        def validate(epoch: int, started: float, train_accuracy: float, train_loss: float) -> EpochResult:
            probabilities = predict(validation_paths, pool)
            validations.append(probabilities)
            chosen = probabilities[np.arange(len(validation_labels)), validation_labels]
            return EpochResult(
                epoch,
                train_accuracy,
                train_loss,
                float(np.mean(probabilities.argmax(axis=1) == validation_labels)),
                float(-np.mean(np.log(np.maximum(chosen, 1e-12)))),
                time.perf_counter() - started,
            )

        epochs = [validate(0, time.perf_counter(), float("nan"), float("nan"))]
        best = [variable.numpy() for variable in trainable]
        if on_epoch:
            on_epoch(epochs[0])
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            order = shuffle.permutation(len(train_images))
            batches = [order[i * BATCH_SIZE : (i + 1) * BATCH_SIZE] for i in range(steps_per_epoch)]
            accuracies, losses = [], []
            for step, (pixels, labels) in enumerate(_prefetched(pool, batches, load_training_batch), start=1):
                accuracy, loss = train_step(tf.constant(pixels), tf.constant(labels))
                accuracies.append(float(accuracy))
                losses.append(float(loss))
                if on_progress:
                    on_progress((epoch - 1) * steps_per_epoch + step, total_steps)
            epochs.append(validate(epoch, started, float(np.mean(accuracies)), float(np.mean(losses))))
            if on_epoch:
                on_epoch(epochs[-1])
            if _score(epochs[-1]) > max(_score(result) for result in epochs[:-1]):
                best = [variable.numpy() for variable in trainable]
    for variable, value in zip(trainable, best, strict=True):
        variable.assign(value)
    best_epoch = max(epochs, key=_score).epoch
    key = _weights_key(module, best)
    tuned = ImageModule(module.name, size, module.feature_size, key, network)
    tuned_head = SoftmaxHead(weights.numpy(), biases.numpy())
    return FineTuned(tuned, tuned_head, epochs, best_epoch, tta, validations[best_epoch])


def _score(result: EpochResult) -> tuple[float, int]:
    """Higher is better: validation accuracy, then the later epoch.

    Not validation loss: label smoothing makes fine-tuned predictions less confident, so on flowers-dev the loss
    always preferred epoch 0 (the layer alone, trained without smoothing), even where fine-tuning was more accurate.
    Among equally accurate epochs the later one has the settled weights of the cosine schedule's end.
    """
    return result.validation_accuracy, result.epoch


def _prefetched(pool: ThreadPoolExecutor, batches: list, load: Callable) -> Iterator:
    """``load(batch)`` for each batch, the next one decoding in ``pool`` while the caller works on the current one."""
    pending = pool.submit(load, batches[0]) if batches else None
    for following in [*batches[1:], None]:
        current = pending.result()
        pending = pool.submit(load, following) if following is not None else None
        yield current


def _weights_key(module: ImageModule, values: list[np.ndarray]) -> str:
    """A cache key of its own for the fine-tuned backbone, so no cache ever mixes it with the original's."""
    digest = hashlib.sha1()
    for value in values:
        digest.update(value.tobytes())
    return f"{module.cache_key}-finetuned-{digest.hexdigest()[:10]}"
