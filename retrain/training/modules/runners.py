"""Running a module over many images fast: TFLite with XNNPACK when the module converts, plain TensorFlow otherwise.

On 2 cores the converted backbone runs at about 1.4x TensorFlow's batched speed (219 vs 157 images/s, model only), and
one single-threaded interpreter per core beats one interpreter using both (219 vs 165: no barrier between threads at
each layer). The converted model takes uint8 pixels and divides by 255 itself, so workers never make float copies.
"""

from __future__ import annotations

import contextlib
import os
import queue
import warnings
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from retrain.core.images import to_float
from retrain.training.modules.cache import read_verified, write_with_digest
from retrain.training.modules.loading import ImageModule, cache_root
from retrain.training.quiet import stderr_closed

ENGINES = ("auto", "tflite", "tensorflow")
# Bump when the conversion changes, so stale converted modules in users' caches are not reused.
TFLITE_VERSION = 1
# One image per call is as fast as batches (measured 1-2 at 173, 4 at 161, 8 at 153 images/s end to end): one image's
# activations stay in a core's cache, and cores already work in parallel on different images.
TFLITE_BATCH_SIZE = 1
TENSORFLOW_BATCH_SIZE = 32
# A converted module whose features differ from TensorFlow's by more than this (relative to their scale) is not used:
# float32 rounding across a deep network stays far below it, a conversion error does not.
CONVERSION_TOLERANCE = 1e-3


def cpu_count() -> int:
    """Cores this process may use (not the machine's count, which containers and taskset hide)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class FeatureRunner:
    """Maps a batch of uint8 pixels ``[n, height, width, 3]`` to float32 features ``[n, feature_size]``.

    Safe to call from ``workers`` threads at once: each call borrows one of ``workers`` interpreters.
    """

    module: ImageModule
    engine: str
    batch_size: int
    workers: int
    interpreters: queue.SimpleQueue | None = None

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        if self.interpreters is None:
            return np.asarray(self.module(to_float(pixels)), dtype=np.float32)
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


def feature_runner(module: ImageModule, engine: str = "auto") -> FeatureRunner:
    """The fastest runner for ``module``: TFLite unless asked for TensorFlow or the module does not convert.

    ``engine="tflite"`` raises RuntimeError instead of falling back, for tests and benchmarks that must measure it.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    workers = cpu_count()
    if engine != "tensorflow":
        try:
            return tflite_runner(module, converted_module(module), workers)
        except Exception as error:  # the converter and interpreter raise many types; any means "use TensorFlow"
            if engine == "tflite":
                raise RuntimeError(f"module {module.name} does not convert to TFLite: {error}") from error
    return FeatureRunner(module, "tensorflow", TENSORFLOW_BATCH_SIZE, workers)


def tflite_runner(module: ImageModule, tflite_model: bytes, workers: int) -> FeatureRunner:
    """A TFLite runner of ``workers`` interpreters over a converted module; ``module`` only gives sizes and names,
    so a Ray actor builds one from the converted bytes without loading the module into TensorFlow."""
    return FeatureRunner(module, "tflite", TFLITE_BATCH_SIZE, workers, _interpreters(tflite_model, workers))


def converted_module(module: ImageModule) -> bytes:
    """The module as a TFLite flatbuffer, converted and checked once, then read from the module cache.

    The cached file is used only if its bytes match the digest recorded at conversion; otherwise it is converted again.
    """
    path = cache_root() / "tflite" / f"{module.cache_key}-t{TFLITE_VERSION}.tflite"
    cached = read_verified(path)
    if cached is not None:
        return cached
    tflite_model = _convert(module)
    _check_against_tensorflow(module, tflite_model)
    with contextlib.suppress(OSError):  # an unwritable cache only costs converting again next run
        write_with_digest(path, tflite_model)
    return tflite_model


def _convert(module: ImageModule) -> bytes:
    height, width = module.image_size

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8, name="pixels")])
    def features(pixels: tf.Tensor) -> tf.Tensor:
        return module(tf.cast(pixels, tf.float32) / 255.0)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([features.get_concrete_function()], module.model)
    return converter.convert()


def _check_against_tensorflow(module: ImageModule, tflite_model: bytes) -> None:
    """Refuse a conversion whose features differ from the module's own on a probe batch."""
    pixels = np.random.default_rng(0).integers(0, 256, (2, *module.image_size, 3), dtype=np.uint8)
    expected = np.asarray(module(to_float(pixels)))
    actual = FeatureRunner(module, "tflite", len(pixels), 1, _interpreters(tflite_model, 1))(pixels)
    scale = max(1.0, float(np.abs(expected).max()))
    if actual.shape != expected.shape or not np.allclose(actual, expected, rtol=0, atol=CONVERSION_TOLERANCE * scale):
        raise ValueError("the converted module's features differ from TensorFlow's")


def tflite_interpreter(model_content: bytes, num_threads: int) -> tf.lite.Interpreter:
    """An allocated interpreter, announcing XNNPACK on a closed stderr (not the user's business).

    tf.lite.Interpreter is deprecated in favour of the ``ai-edge-litert`` package but still ships with TensorFlow 2.21;
    LiteRT's interpreter measured no faster here, so it is not a dependency; should TensorFlow drop it, modules run in
    TensorFlow.
    """
    with warnings.catch_warnings(), stderr_closed():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's notice that LiteRT will replace it
        interpreter = tf.lite.Interpreter(model_content=model_content, num_threads=num_threads)
        interpreter.allocate_tensors()
    return interpreter


def _interpreters(tflite_model: bytes, count: int) -> queue.SimpleQueue:
    """``count`` single-threaded interpreters: one per core measured faster than one with ``count`` threads."""
    interpreters = queue.SimpleQueue()
    for _ in range(count):
        interpreters.put(tflite_interpreter(tflite_model, num_threads=1))
    return interpreters
