"""Decoding image files into the float [0, 1] arrays that image modules take."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Bump when decoding changes what pixels a module sees: cached bottlenecks are keyed by it.
DECODER_VERSION = 1


class ImageDecodeError(Exception):
    """The file could not be decoded as an image."""


def load_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Decode, apply EXIF orientation, convert to RGB and resize to (height, width), as float32 in [0, 1].

    JPEGs are decoded at a reduced DCT scale that is still at least the target size, which makes decoding of large
    photos several times faster for the same result after resizing.
    """
    height, width = size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "palette images with transparency"; not the user's problem here
            with Image.open(path) as image:
                image.draft("RGB", (width, height))
                image = ImageOps.exif_transpose(image)
                if image.mode != "RGB":
                    image = image.convert("RGB")
                image = image.resize((width, height), Image.Resampling.BILINEAR)
                return np.asarray(image, dtype=np.float32) / 255.0
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageDecodeError(f"{path}: {error}") from error
