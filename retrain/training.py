"""Training the new softmax layer on bottlenecks, as the tutorial does: SGD on random mini-batches.

The defaults differ from the tutorial's where flowers-dev measured better (``benchmarks/accuracy.py``): a learning
rate of 0.1 decayed along a cosine instead of a constant 0.01. ``--learning-rate 0.01 --learning-rate-schedule
constant`` is the tutorial's layer exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class TrainingConfig:
    """The tutorial's training flags. A batch size of -1 means the whole set."""

    how_many_training_steps: int = 4000
    learning_rate: float = 0.1
    learning_rate_schedule: str = "cosine"
    train_batch_size: int = 100
    eval_step_interval: int = 10
    validation_batch_size: int = 100
    random_seed: int = 0


@dataclass(frozen=True)
class EvalStep:
    step: int
    train_accuracy: float
    cross_entropy: float
    validation_accuracy: float
    validation_cross_entropy: float
    validation_count: int


@dataclass
class SoftmaxHead:
    """The new layer: logits = bottleneck @ weights + biases."""

    weights: np.ndarray
    biases: np.ndarray

    def logits(self, bottlenecks: np.ndarray) -> np.ndarray:
        return np.asarray(bottlenecks, np.float32) @ self.weights + self.biases

    def probabilities(self, bottlenecks: np.ndarray, mirrored: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities; with the mirrored images' bottlenecks, the mean over both views (``--tta``)."""
        probabilities = tf.nn.softmax(self.logits(bottlenecks)).numpy()
        if mirrored is None:
            return probabilities
        return (probabilities + tf.nn.softmax(self.logits(mirrored)).numpy()) / 2


@dataclass(frozen=True)
class TrainingHooks:
    """What the caller hears while the layer trains: progress, evaluations, and periodic snapshots of the layer."""

    on_step: Callable[[int], None] | None = None
    on_eval: Callable[[EvalStep, SoftmaxHead], None] | None = None
    snapshot_interval: int = 0
    on_snapshot: Callable[[int, SoftmaxHead], None] | None = None


def _sample(rng: np.random.Generator, count: int, batch_size: int) -> np.ndarray:
    """Indices of a random batch drawn with replacement (the tutorial's sampling); -1 takes every row."""
    return np.arange(count) if batch_size == -1 else rng.integers(0, count, size=batch_size)


def learning_rate_at(config: TrainingConfig, step: int) -> float:
    """The rate for step ``step`` (1-based): constant, or decayed along half a cosine from the full rate to zero."""
    if config.learning_rate_schedule == "constant":
        return config.learning_rate
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * (step - 1) / config.how_many_training_steps))


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)))


def train_head(
    train_bottlenecks: np.ndarray,
    train_labels: np.ndarray,
    validation_bottlenecks: np.ndarray,
    validation_labels: np.ndarray,
    class_count: int,
    config: TrainingConfig,
    hooks: TrainingHooks = TrainingHooks(),
    distorted_bottlenecks: Callable[[np.ndarray], np.ndarray] | None = None,
) -> SoftmaxHead:
    """Train the softmax layer on cached training bottlenecks, or on fresh distorted ones when given."""
    tf.random.set_seed(config.random_seed)
    train_rng = np.random.default_rng(config.random_seed)
    validation_rng = np.random.default_rng(config.random_seed + 1)
    feature_size = train_bottlenecks.shape[1]
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

    last = config.how_many_training_steps
    for step in range(1, last + 1):
        rows = _sample(train_rng, len(train_bottlenecks), config.train_batch_size)
        x = distorted_bottlenecks(rows) if distorted_bottlenecks else train_bottlenecks[rows]
        rate = tf.constant(learning_rate_at(config, step), tf.float32)
        train_accuracy, cross_entropy = train_step(tf.constant(x, tf.float32), tf.constant(train_labels[rows]), rate)
        if hooks.on_step:
            hooks.on_step(step)
        if hooks.on_eval and (step % config.eval_step_interval == 0 or step == last):
            head = current()
            rows = _sample(validation_rng, len(validation_bottlenecks), config.validation_batch_size)
            logits = head.logits(validation_bottlenecks[rows])
            labels = validation_labels[rows]
            hooks.on_eval(
                EvalStep(
                    step,
                    float(train_accuracy),
                    float(cross_entropy),
                    float(np.mean(logits.argmax(axis=1) == labels)),
                    _cross_entropy(logits, labels),
                    len(rows),
                ),
                head,
            )
        if hooks.on_snapshot and hooks.snapshot_interval > 0 and step % hooks.snapshot_interval == 0 and step < last:
            hooks.on_snapshot(step, current())
    return current()
