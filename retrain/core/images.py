"""Decoding image files into the pixels that image modules take."""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from retrain.core.dataset import SPECIAL_FILE_REASON

# Bump when decoding changes what pixels a module sees, or which files decode (MAX_DECODE_PIXELS): cached bottlenecks
# and the audit's cached image properties are keyed by it.
DECODER_VERSION = 2
# The most pixels decoded at once, checked from the header (after JPEG's reduced-scale decoding): a decode costs up to
# about 9 bytes a pixel (source, RGB copy, orientation), so two at once (the audit's two threads) stay within ~400 MB.
MAX_DECODE_PIXELS = 24_000_000
# Modes holding more than 8 bits a channel, which converting to RGB would clip instead of scale.
WIDE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
# How a Git LFS pointer file starts (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md); pointers are < 1 KB.
LFS_POINTER_START = b"version https://git-lfs.github.com/spec/v1"
LFS_POINTER_MAX_BYTES = 1024
EXIF_ORIENTATION = 0x0112
# EXIF orientations that turn the picture by a quarter, so the stored width is the displayed height.
QUARTER_TURNS = frozenset({5, 6, 7, 8})


class ImageDecodeError(Exception):
    """The file could not be decoded as an image."""


class OversizedImageError(ImageDecodeError):
    """More pixels than MAX_DECODE_PIXELS even at the format's smallest decoding scale; the message is the reason."""

    @classmethod
    def of_size(cls, width: int, height: int) -> OversizedImageError:
        return cls(
            f"{width}x{height} pixels ({width * height / 1e6:.0f} megapixels), over the "
            f"{MAX_DECODE_PIXELS / 1e6:.0f} megapixels decoded at once: save a smaller copy"
        )


class LfsPointerError(ImageDecodeError):
    """A Git LFS pointer stands where the image should be; the message is the reason."""

    def __init__(self) -> None:
        super().__init__(
            "a Git LFS pointer, not the image: the dataset was checked out without its LFS content; fetch it "
            "(`git lfs pull`, or `lfs: true` on actions/checkout)"
        )


def is_lfs_pointer(path: Path) -> bool:
    """Whether the file is a Git LFS pointer: a few lines of text that name the real file's hash and size."""
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode) or status.st_size > LFS_POINTER_MAX_BYTES:
            return False
        with open(path, "rb") as file:
            return file.read(len(LFS_POINTER_START)) == LFS_POINTER_START
    except OSError:
        return False


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
    except Image.DecompressionBombError as error:
        raise OversizedImageError(f"{error}: save a smaller copy") from None
    except (OSError, ValueError, SyntaxError) as error:
        if is_lfs_pointer(path):
            raise LfsPointerError() from None
        raise ImageDecodeError(f"{path}: {error}") from error


def decode_image(path: Path, at_least: tuple[int, int]) -> DecodedImage:
    """Decode the whole file, upright and in RGB, at no less than ``at_least`` (width, height) where it is larger.

    JPEGs are decoded at a reduced DCT scale that is still at least that size, which makes decoding of large photos
    several times faster for the same result after resizing. Orientation is applied in place: a copy of every upright
    photo would cost a fifth of the decoding time. Raises ImageDecodeError for anything unreadable, including
    truncated files; OversizedImageError, before decoding, when the pixels to decode exceed MAX_DECODE_PIXELS.
    """
    with _decode_errors(path):
        _require_regular(path)
    with _decode_errors(path), Image.open(path) as image:
        width, height = image.size
        mode, file_format = image.mode, image.format
        image.draft("RGB", at_least)
        if image.width * image.height > MAX_DECODE_PIXELS:  # before getexif, which decodes a whole PNG
            raise OversizedImageError.of_size(width, height)
        if image.getexif().get(EXIF_ORIENTATION) in QUARTER_TURNS:
            width, height = height, width
        ImageOps.exif_transpose(image, in_place=True)
        image = _to_rgb(image)
        image.load()
        return DecodedImage(image, width, height, mode, file_format)


def _require_regular(path: Path) -> None:
    """Refuse, without opening it, what is not a regular file: opening a FIFO waits for a writer, forever."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ImageDecodeError(SPECIAL_FILE_REASON)


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB with 8 bits a channel; 16-bit grey scaled down by its top byte, where Pillow's conversion would clip to
    white everything above 255 (``I`` is 16-bit PNG grey on older Pillows)."""
    if image.mode in WIDE_MODES:
        values = np.asarray(image)
        if image.mode == "I":
            values = np.clip(values, 0, 65535)
        image = Image.fromarray((values >> 8).astype(np.uint8))
    return image if image.mode == "RGB" else image.convert("RGB")


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
