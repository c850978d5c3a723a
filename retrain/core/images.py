"""Decoding image files into the pixels that image modules take."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Bump when decoding changes what pixels a module sees: cached bottlenecks are keyed by it.
DECODER_VERSION = 1
EXIF_ORIENTATION = 0x0112
# EXIF orientations that turn the picture by a quarter, so the stored width is the displayed height.
QUARTER_TURNS = frozenset({5, 6, 7, 8})


class ImageDecodeError(Exception):
    """The file could not be decoded as an image."""


@dataclass(frozen=True)
class DecodedImage:
    """An image as the model sees it (RGB, upright) plus what the file says about itself."""

    pixels: Image.Image  # RGB, EXIF orientation applied; JPEGs possibly decoded at a reduced scale
    width: int  # full size as displayed, after EXIF orientation
    height: int
    mode: str  # the file's own colour mode: "RGB", "L", "CMYK", "RGBA", "P", ...
    format: str | None


@contextmanager
def _decode_errors(path: Path) -> Iterator[None]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "palette images with transparency"; not the user's problem here
            yield
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageDecodeError(f"{path}: {error}") from error


def decode_image(path: Path, at_least: tuple[int, int]) -> DecodedImage:
    """Decode the whole file, upright and in RGB, at no less than ``at_least`` (width, height) where it is larger.

    JPEGs are decoded at a reduced DCT scale that is still at least that size, which makes decoding of large photos
    several times faster for the same result after resizing. Orientation is applied in place: a copy of every upright
    photo would cost a fifth of the decoding time. Raises ImageDecodeError for anything unreadable, including
    truncated files.
    """
    with _decode_errors(path), Image.open(path) as image:
        width, height = image.size
        if image.getexif().get(EXIF_ORIENTATION) in QUARTER_TURNS:
            width, height = height, width
        mode, file_format = image.mode, image.format
        image.draft("RGB", at_least)
        ImageOps.exif_transpose(image, in_place=True)
        if image.mode != "RGB":
            image = image.convert("RGB")
        image.load()
        return DecodedImage(image, width, height, mode, file_format)


def load_pixels(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Decode, apply EXIF orientation, convert to RGB and resize to (height, width), as uint8."""
    height, width = size
    pixels = decode_image(path, (width, height)).pixels
    with _decode_errors(path):
        pixels = pixels.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(pixels)


def to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels as the float32 values in [0, 1] that modules take."""
    return np.asarray(pixels, dtype=np.float32) / 255.0


def load_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """``load_pixels`` as float32 in [0, 1]."""
    return to_float(load_pixels(path, size))
