"""Training the new softmax layer on bottlenecks, as the tutorial does: SGD on random mini-batches."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import tensorflow as tf

from retrain.core.hooks import Hooks
from retrain.core.results import EvalStep, SoftmaxHead
from retrain.core.settings import TrainingSettings


@dataclass(frozen=True)
class LabeledVectors:
    """Bottlenecks and their label indices, row-aligned; a training step takes the rows it draws."""

    vectors: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, rows: np.ndarray) -> np.ndarray:
        return self.vectors[rows]


class TrainingExamples(Protocol):
    """What a step draws from: cached bottlenecks (LabeledVectors), or fresh ones of distorted images."""

    labels: np.ndarray

    def __len__(self) -> int: ...

    def batch(self, rows: np.ndarray) -> np.ndarray: ...


def _sample(rng: np.random.Generator, count: int, batch_size: int) -> np.ndarray:
    """Indices of a random batch drawn with replacement (the tutorial's sampling); -1 takes every row."""
    return np.arange(count) if batch_size == -1 else rng.integers(0, count, size=batch_size)


def learning_rate_at(settings: TrainingSettings, step: int) -> float:
    """The rate for step ``step`` (1-based): constant, or decayed along half a cosine from the full rate to zero."""
    if settings.learning_rate_schedule == "constant":
        return settings.learning_rate
    return settings.learning_rate * 0.5 * (1 + math.cos(math.pi * (step - 1) / settings.how_many_training_steps))


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)))


def train_head(
    training: TrainingExamples,
    validation: LabeledVectors,
    *,
    class_count: int,
    settings: TrainingSettings,
    hooks: Hooks = Hooks(),
    snapshot_every: int = 0,
) -> SoftmaxHead:
    """Train the softmax layer on the training examples.

    It is evaluated on a validation sample every ``eval_step_interval`` steps, at the last step, and every
    ``snapshot_every`` steps (when not 0), so that every snapshot of the layer comes with its numbers.
    """
    tf.random.set_seed(settings.random_seed)
    train_rng = np.random.default_rng(settings.random_seed)
    validation_rng = np.random.default_rng(settings.random_seed + 1)
    feature_size = validation.vectors.shape[1]
    weights = tf.Variable(tf.random.truncated_normal([feature_size, class_count], stddev=0.001), name="final_weights")
    biases = tf.Variable(tf.zeros([class_count]), name="final_biases")

    @tf.function
    def train_step(x: tf.Tensor, y: tf.Tensor, rate: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            logits = tf.matmul(x, weights) + biases
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        weights_gradient, biases_gradient = tape.gradient(loss, [weights, biases])
        weights.assign_sub(rate * weights_gradient)
        biases.assign_sub(rate * biases_gradient)
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, axis=1), y), tf.float32))
        return accuracy, loss

    def current() -> SoftmaxHead:
        return SoftmaxHead(weights.numpy(), biases.numpy())

    def evaluate(step: int, train_accuracy: float, cross_entropy: float) -> EvalStep:
        rows = _sample(validation_rng, len(validation), settings.validation_batch_size)
        layer = current()
        logits = layer.logits(validation.batch(rows))
        labels = validation.labels[rows]
        validation_accuracy = float(np.mean(logits.argmax(axis=1) == labels))
        validation_loss = _cross_entropy(logits, labels)
        return EvalStep(step, train_accuracy, cross_entropy, validation_accuracy, validation_loss, len(rows), layer)

    def evaluated_at(step: int) -> bool:
        return (
            step % settings.eval_step_interval == 0 or step == last or (snapshot_every and step % snapshot_every == 0)
        )

    last = settings.how_many_training_steps
    for step in range(1, last + 1):
        rows = _sample(train_rng, len(training), settings.train_batch_size)
        x = tf.constant(training.batch(rows), tf.float32)
        rate = tf.constant(learning_rate_at(settings, step), tf.float32)
        train_accuracy, cross_entropy = train_step(x, tf.constant(training.labels[rows]), rate)
        hooks.on_progress("Training", step, last)
        if evaluated_at(step):
            hooks.on_eval(evaluate(step, float(train_accuracy), float(cross_entropy)))
    return current()
