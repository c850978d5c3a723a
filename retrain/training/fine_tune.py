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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from retrain.core.dataset import LabeledImage
from retrain.core.hooks import Hooks
from retrain.core.images import load_pixels, to_float
from retrain.core.results import EpochResult, SoftmaxHead
from retrain.core.settings import FineTuneSettings
from retrain.training.distortions import distort
from retrain.training.modules import ImageModule
from retrain.training.modules.efficientnet_lite import EfficientNetLite
from retrain.training.tta import mirrored_mean

# Images per step of fine-tuning, and per batch when predicting with the fine-tuned network.
BATCH_SIZE = 32


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
            def scored(batch: tf.Tensor) -> tf.Tensor:
                return tf.nn.softmax(tf.matmul(network.__call__(batch), weights) + biases)

            return mirrored_mean(scored, images) if tta else scored(images)

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
    *,
    training: Sequence[LabeledImage],
    validation: Sequence[LabeledImage],
    settings: FineTuneSettings,
    seed: int,
    tta: bool,
    hooks: Hooks = Hooks(),
) -> FineTuned:
    """Train the top ``settings.blocks`` blocks and the layer; keep the epoch with the best validation accuracy."""
    run = _FineTuning(network, head, training, settings, seed)
    predict = Predictor(network, run.weights, run.biases, tta)
    validation_paths = [image.path for image in validation]
    validation_labels = np.array([image.label_index for image in validation])
    validations: list[np.ndarray] = []  # validation probabilities, one array per epoch
    with ThreadPoolExecutor(max_workers=2) as pool:

        def validate(epoch: int, started: float, train_scores: tuple[float | None, float | None]) -> EpochResult:
            probabilities = predict(validation_paths, pool)
            validations.append(probabilities)
            chosen = probabilities[np.arange(len(validation_labels)), validation_labels]
            result = EpochResult(
                epoch,
                *train_scores,
                float(np.mean(probabilities.argmax(axis=1) == validation_labels)),
                float(-np.mean(np.log(np.maximum(chosen, 1e-12)))),
                time.perf_counter() - started,
            )
            hooks.on_epoch(result)
            return result

        epochs = [validate(0, time.perf_counter(), (None, None))]
        best = run.values()
        for epoch in range(1, settings.epochs + 1):
            started = time.perf_counter()
            scores = run.epoch(epoch, pool, hooks.progress("Fine-tuning"))
            epochs.append(validate(epoch, started, scores))
            if _score(epochs[-1]) > max(_score(result) for result in epochs[:-1]):
                best = run.values()
    run.restore(best)
    best_epoch = max(epochs, key=_score).epoch
    tuned = ImageModule(module.name, run.size, module.feature_size, _weights_key(module, best), network)
    tuned_head = SoftmaxHead(run.weights.numpy(), run.biases.numpy())
    return FineTuned(tuned, tuned_head, epochs, best_epoch, tta, validations[best_epoch])


class _FineTuning:
    """The trainable variables, their two optimizers and the augmented training step."""

    def __init__(
        self,
        network: EfficientNetLite,
        head: SoftmaxHead,
        training: Sequence[LabeledImage],
        settings: FineTuneSettings,
        seed: int,
    ) -> None:
        self.network = network
        self.settings = settings
        self.training = training
        self.labels = np.array([image.label_index for image in training], dtype=np.int32)
        self.generator = tf.random.Generator.from_seed(seed)
        self.shuffle = np.random.default_rng(seed)
        self.start = max(0, len(network.blocks) - settings.blocks)
        self.weights = tf.Variable(head.weights, name="final_weights")
        self.biases = tf.Variable(head.biases, name="final_biases")
        self.backbone_variables = network.top_variables(self.start)  # the top blocks and the head convolution
        self.trainable = [*self.backbone_variables, self.weights, self.biases]
        self.steps_per_epoch = max(1, len(training) // BATCH_SIZE)
        self.total_steps = self.steps_per_epoch * settings.epochs
        self.backbone_optimizer = self._optimizer(settings.learning_rate)
        self.layer_optimizer = self._optimizer(settings.learning_rate * settings.layer_learning_rate_factor)
        self.size = (network.image_size, network.image_size)
        self.decode_size = settings.augmentation.decode_size(self.size)
        self.train_step = tf.function(self._train_step)

    def _optimizer(self, peak: float) -> tf.keras.optimizers.Optimizer:
        schedule = tf.keras.optimizers.schedules.CosineDecay(peak, self.total_steps)
        return tf.keras.optimizers.SGD(schedule, momentum=0.9)

    def _train_step(self, pixels: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        settings = self.settings
        images = distort(settings.augmentation, tf.cast(pixels, tf.float32) / 255.0, self.size, self.generator)
        frozen = tf.stop_gradient(self.network.bottom(images, self.start))
        with tf.GradientTape() as tape:
            features = self.network.top(frozen, self.start)
            if settings.dropout > 0:
                seed = self.generator.make_seeds(1)[:, 0]
                features = tf.nn.experimental.stateless_dropout(features, settings.dropout, seed)
            logits = tf.matmul(features, self.weights) + self.biases
            class_count = self.biases.shape[0]
            smoothing = settings.label_smoothing
            targets = tf.one_hot(labels, class_count) * (1 - smoothing) + smoothing / class_count
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(targets, logits))
        gradients = tape.gradient(loss, self.trainable)
        split = len(self.backbone_variables)
        self.backbone_optimizer.apply_gradients(zip(gradients[:split], self.backbone_variables, strict=True))
        self.layer_optimizer.apply_gradients(zip(gradients[split:], [self.weights, self.biases], strict=True))
        correct = tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels)
        return tf.reduce_mean(tf.cast(correct, tf.float32)), loss

    def _load_batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pixels = np.stack([load_pixels(self.training[row].path, self.decode_size) for row in rows])
        return pixels, self.labels[rows]

    def epoch(
        self, epoch: int, pool: ThreadPoolExecutor, on_progress: Callable[[int, int], None]
    ) -> tuple[float, float]:
        """One pass over the training images in a new order; mean training accuracy and loss."""
        order = self.shuffle.permutation(len(self.training))
        batches = [order[i * BATCH_SIZE : (i + 1) * BATCH_SIZE] for i in range(self.steps_per_epoch)]
        accuracies, losses = [], []
        for step, (pixels, labels) in enumerate(_prefetched(pool, batches, self._load_batch), start=1):
            accuracy, loss = self.train_step(tf.constant(pixels), tf.constant(labels))
            accuracies.append(float(accuracy))
            losses.append(float(loss))
            on_progress((epoch - 1) * self.steps_per_epoch + step, self.total_steps)
        return float(np.mean(accuracies)), float(np.mean(losses))

    def values(self) -> list[np.ndarray]:
        return [variable.numpy() for variable in self.trainable]

    def restore(self, values: list[np.ndarray]) -> None:
        for variable, value in zip(self.trainable, values, strict=True):
            variable.assign(value)


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
