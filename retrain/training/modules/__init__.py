"""Image modules: the bundled EfficientNet-Lite backbones and TF Hub modules, loaded the same way."""

from retrain.training.modules.loading import ImageModule, cache_root, load_image_module

__all__ = ["ImageModule", "cache_root", "load_image_module"]
