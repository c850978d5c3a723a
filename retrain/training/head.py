"""Training the new softmax layer on bottlenecks, as the tutorial does: SGD on random mini-batches.

The layer is a 1280 x classes matrix: a step is two small matrix products, about 0.1 ms in numpy on one thread, where a
TensorFlow call costs about 3 ms of dispatch (4,000 steps: 11 s, now under 1 s), and BLAS threads fighting over two
busy cores made each product 20 times slower than one thread. The exported model computes the same logits in
TensorFlow (``retrain.training.export``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.special import log_softmax, softmax
from threadpoolctl import threadpool_limits

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


@dataclass(frozen=True)
class TableRows:
    """Rows ``rows`` of a bottleneck table and then (with ``mirrored``) the same rows of the mirror images' table, with
    their label indices, drawn in place: a step takes a few rows, where copying a 100,000-photo training split (twice,
    with mirror images) cost seconds of a run."""

    vectors: np.ndarray
    rows: np.ndarray
    labels: np.ndarray  # the rows' label indices, twice with mirrored
    mirrored: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, rows: np.ndarray) -> np.ndarray:
        if self.mirrored is None:
            return self.vectors.take(self.rows[rows], axis=0)
        flipped = rows >= len(self.rows)
        source = self.rows[rows - len(self.rows) * flipped]
        batch = self.vectors.take(source, axis=0)
        mirror = np.flatnonzero(flipped)
        batch[mirror] = self.mirrored.take(source[mirror], axis=0)
        return batch


class TrainingExamples(Protocol):
    """What a step draws from: cached bottlenecks (TableRows, LabeledVectors), or fresh ones of distorted images."""

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
    return float(-np.mean(log_softmax(logits, axis=1)[np.arange(len(labels)), labels]))


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
    train_rng = np.random.default_rng(settings.random_seed)
    validation_rng = np.random.default_rng(settings.random_seed + 1)
    # Zero, not random, weights to start from: the loss is convex, so no symmetry needs breaking.
    weights = np.zeros((validation.vectors.shape[1], class_count), np.float32)
    biases = np.zeros(class_count, np.float32)
    one_hot = np.eye(class_count, dtype=np.float32)

    def train_step(x: np.ndarray, y: np.ndarray, rate: float) -> np.ndarray:
        """One step of gradient descent on the batch's mean cross-entropy; the batch's logits before it."""
        logits = x @ weights + biases
        gradient = (softmax(logits, axis=1) - one_hot[y]) / len(y)  # of the mean loss, by the logits
        weights[:] -= np.float32(rate) * (x.T @ gradient)
        biases[:] -= np.float32(rate) * gradient.sum(axis=0)
        return logits

    def current() -> SoftmaxHead:
        return SoftmaxHead(weights.copy(), biases.copy())

    def evaluate(step: int, batch_logits: np.ndarray, batch_labels: np.ndarray) -> EvalStep:
        train_accuracy = float(np.mean(batch_logits.argmax(axis=1) == batch_labels))
        cross_entropy = _cross_entropy(batch_logits, batch_labels)
        rows = _sample(validation_rng, len(validation), settings.validation_batch_size)
        layer = current()
        logits = layer.logits(validation.batch(rows))
        labels = validation.labels[rows]
        validation_accuracy = float(np.mean(logits.argmax(axis=1) == labels))
        validation_loss = _cross_entropy(logits, labels)
        return EvalStep(
            step, last, train_accuracy, cross_entropy, validation_accuracy, validation_loss, len(rows), layer
        )

    def evaluated_at(step: int) -> bool:
        return (
            step % settings.eval_step_interval == 0 or step == last or (snapshot_every and step % snapshot_every == 0)
        )

    last = settings.how_many_training_steps
    with threadpool_limits(1, user_api="blas"):
        for step in range(1, last + 1):
            rows = _sample(train_rng, len(training), settings.train_batch_size)
            x, y = np.asarray(training.batch(rows), np.float32), training.labels[rows]
            logits = train_step(x, y, learning_rate_at(settings, step))
            hooks.on_progress("Training", step, last)
            if evaluated_at(step):
                hooks.on_eval(evaluate(step, logits, y))
    return current()
