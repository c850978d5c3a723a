"""Image modules: the bundled EfficientNet-Lite backbones and TF Hub modules, loaded the same way.

The names below load on first use (PEP 562): loading a module imports TensorFlow, and what only needs a bundled
backbone's cache key or its cached TFLite form (``bundled``, a re-audit's bottlenecks) must not pay for it.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ImageModule", "cache_root", "load_image_module"]
_HOMES = {"ImageModule": "loading", "load_image_module": "loading", "cache_root": "bundled"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
