"""Test-time augmentation (``--tta``): a prediction is the mean of the image's and its mirror image's.

The exported model and fine-tuning's scoring compute it in TensorFlow here; the new layer alone scores cached
bottlenecks of both views (``retrain.core.results.SoftmaxHead.probabilities``), which is the same mean.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf


def mirrored_mean(probabilities: Callable[[tf.Tensor], tf.Tensor], images: tf.Tensor) -> tf.Tensor:
    """The mean of ``probabilities`` over each image (NHWC) and its left-right mirror, run as one batch of both."""
    both = probabilities(tf.concat([images, tf.reverse(images, axis=[2])], axis=0))
    plain, mirrored = tf.split(both, 2, axis=0)
    return (plain + mirrored) / 2
