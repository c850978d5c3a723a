"""Decoding image files into the pixels that image modules take."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Bump when decoding changes what pixels a module sees: cached bottlenecks are keyed by it.
DECODER_VERSION = 1


class ImageDecodeError(Exception):
    """The file could not be decoded as an image."""


def load_pixels(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Decode, apply EXIF orientation, convert to RGB and resize to (height, width), as uint8.

    JPEGs are decoded at a reduced DCT scale that is still at least the target size, which makes decoding of large
    photos several times faster for the same result after resizing. Orientation is applied in place: a copy of every
    upright photo would cost a fifth of the decoding time.
    """
    height, width = size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "palette images with transparency"; not the user's problem here
            with Image.open(path) as image:
                image.draft("RGB", (width, height))
                ImageOps.exif_transpose(image, in_place=True)
                if image.mode != "RGB":
                    image = image.convert("RGB")
                return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageDecodeError(f"{path}: {error}") from error


def to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels as the float32 values in [0, 1] that modules take."""
    return np.asarray(pixels, dtype=np.float32) / 255.0


def load_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """``load_pixels`` as float32 in [0, 1]."""
    return to_float(load_pixels(path, size))
