"""The tutorial's image distortions: random crop, scale, left-right flip and brightness, applied per image.

A distorted image has a bottleneck of its own, so with distortions on, every training step decodes its batch,
distorts it and runs the module again; the bottleneck cache can only serve validation and test.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tensorflow as tf

from retrain.core.images import load_image
from retrain.core.settings import Distortions
from retrain.training.modules import ImageModule


def distort(
    distortions: Distortions, images: tf.Tensor, size: tuple[int, int], generator: tf.random.Generator
) -> tf.Tensor:
    """Distort a batch of decoded images into a batch of ``size`` images."""
    batch = tf.shape(images)[0]
    scale = generator.uniform([batch], 1.0, 1.0 + distortions.random_scale / 100)
    side = 1.0 / ((1.0 + distortions.random_crop / 100) * scale)  # of the crop box, as a fraction of the image
    top = generator.uniform([batch]) * (1.0 - side)
    left = generator.uniform([batch]) * (1.0 - side)
    boxes = tf.stack([top, left, top + side, left + side], axis=1)
    images = tf.image.crop_and_resize(images, boxes, tf.range(batch), size)
    if distortions.flip_left_right:
        flip = generator.uniform([batch]) < 0.5
        images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
    if distortions.random_brightness > 0:
        low, high = 1.0 - distortions.random_brightness / 100, 1.0 + distortions.random_brightness / 100
        images = tf.clip_by_value(images * generator.uniform([batch], low, high)[:, None, None, None], 0.0, 1.0)
    return images


class DistortedBottlenecks:
    """Training examples whose bottlenecks are computed afresh from distorted images, for the rows a step draws."""

    def __init__(
        self, paths: list[Path], labels: np.ndarray, module: ImageModule, *, distortions: Distortions, seed: int
    ) -> None:
        self.paths = paths
        self.labels = labels
        self.module = module
        self.distortions = distortions
        self.generator = tf.random.Generator.from_seed(seed)
        self.pool = ThreadPoolExecutor(max_workers=2)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, rows: np.ndarray) -> np.ndarray:
        decode_size = self.distortions.decode_size(self.module.image_size)
        images = np.stack(list(self.pool.map(lambda row: load_image(self.paths[row], decode_size), rows)))
        distorted = distort(self.distortions, tf.constant(images), self.module.image_size, self.generator)
        return np.asarray(self.module(distorted), dtype=np.float32)
