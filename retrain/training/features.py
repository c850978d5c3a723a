"""Features from image files without TensorFlow: the runner every executor calls, LiteRT interpreters, one batch's path.

Nothing here imports TensorFlow, so a Ray actor that only runs a converted module does not spend the 5-6 s a TensorFlow
import takes (it builds its interpreters in 0.05 s). The converted model takes uint8 pixels and divides by 255 itself,
so workers never make float copies.
"""

from __future__ import annotations

import os
import queue
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from retrain.core.images import ImageDecodeError, load_pixels
from retrain.core.shard_store import VECTOR_DTYPE
from retrain.training.quiet import stderr_closed

# One image per call is as fast as batches (measured 1-2 at 173, 4 at 161, 8 at 153 images/s end to end): one image's
# activations stay in a core's cache, and cores already work in parallel on different images.
TFLITE_BATCH_SIZE = 1
# One computed batch: the rows computed, their features, and (row, reason) for each row that failed.
Batch = tuple[list[int], np.ndarray, list[tuple[int, str]]]
NON_FINITE = "the module returned NaN or infinite features for it"


@dataclass
class FeatureRunner:
    """Maps a batch of uint8 pixels ``[n, height, width, 3]`` to float32 features ``[n, feature_size]``.

    Safe to call from ``workers`` threads at once.
    """

    engine: str
    image_size: tuple[int, int]
    feature_size: int
    batch_size: int
    workers: int
    features: Callable[[np.ndarray], np.ndarray]

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return self.features(pixels)


def tflite_runner(tflite_model: bytes, image_size: tuple[int, int], feature_size: int, workers: int) -> FeatureRunner:
    """A runner of ``workers`` interpreters over a converted module: one single-threaded interpreter per core measured
    faster than one using every core (219 vs 165 images/s on 2 cores: no barrier between threads at each layer)."""
    pool = _InterpreterPool(tflite_model, workers)
    return FeatureRunner("tflite", image_size, feature_size, TFLITE_BATCH_SIZE, workers, pool)


def tflite_interpreter(model_content: bytes, num_threads: int) -> Interpreter:
    """An allocated LiteRT interpreter (TensorFlow Lite's successor), announcing XNNPACK on a closed stderr."""
    with stderr_closed():
        interpreter = Interpreter(model_content=model_content, num_threads=num_threads)
        interpreter.allocate_tensors()
    return interpreter


def cpu_count() -> int:
    """Cores this process may use (not the machine's count, which containers and taskset hide)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_batch(runner: FeatureRunner, batch: list[tuple[int, Path]], mirrored: bool) -> Batch:
    """Decode a batch and run the module on it: the one path every executor takes, so their numbers are the same."""
    pixels = np.empty((len(batch), *runner.image_size, 3), np.uint8)
    rows: list[int] = []
    failures: list[tuple[int, str]] = []
    for row, path in batch:
        try:
            image = load_pixels(path, runner.image_size)
            pixels[len(rows)] = image[:, ::-1] if mirrored else image
        except ImageDecodeError as error:
            failures.append((row, str(error.__cause__ or error)))
        else:
            rows.append(row)
    if not rows:
        return rows, np.zeros((0, runner.feature_size), VECTOR_DTYPE), failures
    features = runner(pixels[: len(rows)])
    finite = np.isfinite(features).all(axis=1)
    failures.extend((row, NON_FINITE) for row, ok in zip(rows, finite.tolist(), strict=True) if not ok)
    return [row for row, ok in zip(rows, finite.tolist(), strict=True) if ok], features[finite], failures


class _InterpreterPool:
    """``count`` single-threaded interpreters; each call borrows one, so ``count`` threads can run at once."""

    def __init__(self, tflite_model: bytes, count: int) -> None:
        self.interpreters: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(count):
            self.interpreters.put(tflite_interpreter(tflite_model, num_threads=1))

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        interpreter = self.interpreters.get()
        try:
            (image_input,) = interpreter.get_input_details()
            if tuple(image_input["shape"]) != pixels.shape:
                interpreter.resize_tensor_input(image_input["index"], pixels.shape)
                interpreter.allocate_tensors()
            interpreter.set_tensor(image_input["index"], pixels)
            interpreter.invoke()
            (features,) = interpreter.get_output_details()
            return interpreter.get_tensor(features["index"])
        finally:
            self.interpreters.put(interpreter)


def local_batches(missing: list[tuple[int, Path]], runner: FeatureRunner, mirrored: bool) -> Iterator[Batch]:
    """Each batch's rows computed, their features, and the rows that failed to decode.

    Each worker thread decodes a batch and runs it, so one core decodes while the other runs the module, with no
    hand-off between threads; at most two batches per worker are in memory, never the whole dataset.
    """
    size = runner.batch_size
    batches = deque(missing[i : i + size] for i in range(0, len(missing), size))
    with ThreadPoolExecutor(runner.workers) as pool:
        pending = deque()
        while batches or pending:
            while batches and len(pending) < 2 * runner.workers:
                pending.append(pool.submit(run_batch, runner, batches.popleft(), mirrored))
            yield pending.popleft().result()
