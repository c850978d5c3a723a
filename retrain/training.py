"""Training the new softmax layer on cached bottlenecks, as the tutorial does: SGD on random mini-batches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class TrainingConfig:
    """The tutorial's training flags, with its defaults. A batch size of -1 means the whole set."""

    how_many_training_steps: int = 4000
    learning_rate: float = 0.01
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
    validation_count: int


@dataclass
class SoftmaxHead:
    """The new layer: logits = bottleneck @ weights + biases."""

    weights: np.ndarray
    biases: np.ndarray

    def probabilities(self, bottlenecks: np.ndarray) -> np.ndarray:
        return tf.nn.softmax(np.asarray(bottlenecks, np.float32) @ self.weights + self.biases).numpy()

    def predict(self, bottlenecks: np.ndarray) -> np.ndarray:
        return np.argmax(bottlenecks @ self.weights + self.biases, axis=1)


def _sample(rng: np.random.Generator, count: int, batch_size: int) -> np.ndarray:
    """Indices of a random batch drawn with replacement (the tutorial's sampling); -1 takes every row."""
    return np.arange(count) if batch_size == -1 else rng.integers(0, count, size=batch_size)


def train_head(
    train_bottlenecks: np.ndarray,
    train_labels: np.ndarray,
    validation_bottlenecks: np.ndarray,
    validation_labels: np.ndarray,
    class_count: int,
    config: TrainingConfig,
    on_eval: Callable[[EvalStep], None] | None = None,
) -> SoftmaxHead:
    """Train the softmax layer; ``on_eval`` hears train/validation accuracy every ``eval_step_interval`` steps."""
    tf.random.set_seed(config.random_seed)
    train_rng = np.random.default_rng(config.random_seed)
    validation_rng = np.random.default_rng(config.random_seed + 1)
    feature_size = train_bottlenecks.shape[1]
    weights = tf.Variable(tf.random.truncated_normal([feature_size, class_count], stddev=0.001), name="final_weights")
    biases = tf.Variable(tf.zeros([class_count]), name="final_biases")
    train_x = tf.constant(train_bottlenecks, tf.float32)
    train_y = tf.constant(train_labels, tf.int64)

    @tf.function
    def train_step(indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x, y = tf.gather(train_x, indices), tf.gather(train_y, indices)
        with tf.GradientTape() as tape:
            logits = tf.matmul(x, weights) + biases
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        weights_gradient, biases_gradient = tape.gradient(loss, [weights, biases])
        weights.assign_sub(config.learning_rate * weights_gradient)
        biases.assign_sub(config.learning_rate * biases_gradient)
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, axis=1), y), tf.float32))
        return accuracy, loss

    for step in range(1, config.how_many_training_steps + 1):
        indices = _sample(train_rng, len(train_bottlenecks), config.train_batch_size)
        train_accuracy, cross_entropy = train_step(tf.constant(indices))
        if on_eval and (step % config.eval_step_interval == 0 or step == config.how_many_training_steps):
            head = SoftmaxHead(weights.numpy(), biases.numpy())
            rows = _sample(validation_rng, len(validation_bottlenecks), config.validation_batch_size)
            validation_accuracy = float(np.mean(head.predict(validation_bottlenecks[rows]) == validation_labels[rows]))
            on_eval(EvalStep(step, float(train_accuracy), float(cross_entropy), validation_accuracy, len(rows)))
    return SoftmaxHead(weights.numpy(), biases.numpy())
