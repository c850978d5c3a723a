"""The fast path (TFLite) gives the same bottlenecks and the same predictions as TensorFlow; other modules fall back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from retrain.core.bottleneck_cache import BottleneckCache
from retrain.core.dataset import list_dataset
from retrain.core.images import load_pixels, to_float
from retrain.core.settings import TrainingSettings
from retrain.training.bottlenecks import compute_bottlenecks
from retrain.training.head import LabeledVectors, train_head
from retrain.training.modules import load_image_module
from retrain.training.modules.runners import feature_runner
from tests.conftest import copy_dataset, sample_photos

# Features are means of ReLU6 activations (0 to 6). TFLite and TensorFlow sum in different orders and XNNPACK uses
# fused kernels, so float32 rounding differs by about 1e-5 after ~60 layers; a real conversion mistake (padding,
# normalisation, channel order) moves features by 1e-1 or more.
FEATURE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def module():
    return load_image_module("efficientnet_lite0")


def test_fast_path_features_match_tensorflow_on_real_photos(module, flowers_sample: Path) -> None:
    runner = feature_runner(module, "tflite")
    photos = [photo for label in ("daisy", "roses", "tulips") for photo in sample_photos(flowers_sample, label, 8)]
    pixels = np.stack([load_pixels(photo, module.image_size) for photo in photos])
    fast = np.concatenate([runner(pixels[i : i + runner.batch_size]) for i in range(0, len(pixels), runner.batch_size)])
    reference = module(to_float(pixels)).numpy()
    assert reference.std() > 0.1
    assert np.abs(fast - reference).max() < FEATURE_TOLERANCE


def test_head_trained_on_fast_bottlenecks_predicts_as_one_trained_on_tensorflow_ones(
    module, flowers_sample: Path, tmp_path: Path
) -> None:
    images = list_dataset(flowers_sample).images
    heads, test_sets = [], []
    for engine in ("tflite", "tensorflow"):
        cache = BottleneckCache(tmp_path / engine, module.cache_key)
        bottlenecks = compute_bottlenecks(images, module, cache, runner=feature_runner(module, engine))
        heads.append(
            train_head(
                _split(bottlenecks, "training"),
                _split(bottlenecks, "validation"),
                class_count=5,
                settings=TrainingSettings(how_many_training_steps=1000),
            )
        )
        test_sets.append(_split(bottlenecks, "testing").vectors)
    fast_head, reference_head = heads
    fast_test, reference_test = test_sets
    assert len(fast_test) >= 15
    expected = reference_head.logits(reference_test).argmax(axis=1)
    np.testing.assert_array_equal(fast_head.logits(fast_test).argmax(axis=1), expected)
    # What the exported model computes: the head trained on fast bottlenecks over TensorFlow's features.
    np.testing.assert_array_equal(fast_head.logits(reference_test).argmax(axis=1), expected)


def _split(bottlenecks, name: str) -> LabeledVectors:
    """One split's rows of ``bottlenecks``, as training takes them."""
    rows = [i for i, image in enumerate(bottlenecks.images) if image.split == name]
    return LabeledVectors(bottlenecks.vectors[rows], np.array([bottlenecks.images[i].label_index for i in rows]))


class _BesselFeatures(tf.Module):
    """A module using an op TFLite's builtins lack (Bessel I0e), so it cannot be converted."""

    def __init__(self) -> None:
        super().__init__()
        self.__call__ = tf.function(
            lambda images: tf.math.bessel_i0e(tf.reduce_mean(images, axis=[1, 2])),
            input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)],
        )


def test_module_that_does_not_convert_runs_in_tensorflow(flowers_sample: Path, tmp_path: Path) -> None:
    tf.saved_model.save(_BesselFeatures(), str(tmp_path / "bessel"))
    module = load_image_module(str(tmp_path / "bessel"))
    assert feature_runner(module).engine == "tensorflow"
    with pytest.raises(RuntimeError, match="does not convert"):
        feature_runner(module, "tflite")
    photos = copy_dataset(tmp_path / "photos", {c: sample_photos(flowers_sample, c, 5) for c in ("daisy", "roses")})
    result = compute_bottlenecks(list_dataset(photos).images, module, BottleneckCache(tmp_path / "cache", "bessel"))
    expected = module(np.stack([to_float(load_pixels(image.path, (32, 32))) for image in result.images])).numpy()
    assert result.computed == 10
    np.testing.assert_allclose(result.vectors, expected, rtol=1e-6)
