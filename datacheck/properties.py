"""The one decoding pass: every image file is read once and all per-image properties come out of it, as a table."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from retrain.core.bottleneck_cache import content_key
from retrain.core.dataset import FolderScan, split_for
from retrain.core.images import ImageDecodeError, LfsPointerError, OversizedImageError, decode_image
from retrain.core.settings import SplitSettings

# Pixel statistics are measured at this size, so that sharpness and detail compare across photos of any size.
MEASURE_SIZE = (256, 256)

ProgressCallback = Callable[[int, int], None]


def image_properties(
    scan: FolderScan, split: SplitSettings, on_progress: ProgressCallback | None = None
) -> pd.DataFrame:
    """One row per image file of every class, in scan order: where it is, its split, its content and pixel statistics.

    A file that cannot be decoded gets its reason in ``error`` and missing statistics; it never stops the pass.
    """
    files = [(folder.label, path) for folder in scan.classes for path in folder.images]
    rows = []
    if on_progress:
        on_progress(0, len(files))
    with ThreadPoolExecutor(max_workers=2) as pool:  # decoding releases the GIL
        for done, statistics in enumerate(pool.map(lambda file: _measure(file[1]), files), start=1):
            rows.append(statistics)
            if on_progress and (done % 32 == 0 or done == len(files)):
                on_progress(done, len(files))
    table = pd.DataFrame(rows, columns=list(_COLUMNS))
    table.insert(0, "path", [path.relative_to(scan.root).as_posix() for _, path in files])
    table.insert(1, "label", [label for label, _ in files])
    table.insert(
        2, "split", [split_for(path, split.testing_percentage, split.validation_percentage) for _, path in files]
    )
    return table


# The measured columns, after path, label and split; what each means.
_COLUMNS = {
    "bytes": "file size",
    "sha1": "content key, as the bottleneck cache keys it",
    "error": "why the file could not be decoded, else None (and no statistics)",
    "error_kind": "what kind of reason `error` is: corrupt, oversized (too many pixels to decode) or lfs_pointer",
    "width": "pixels, as displayed (after EXIF orientation)",
    "height": "pixels, as displayed (after EXIF orientation)",
    "mode": "the file's own colour mode: RGB, L, CMYK, RGBA, P, ...",
    "format": "the file's actual format (JPEG, PNG, ...), whatever its extension",
    "red": "mean red, 0..1",
    "green": "mean green, 0..1",
    "blue": "mean blue, 0..1",
    "brightness": "mean luminance, 0..1",
    "contrast": "standard deviation of luminance: near 0 for a blank image",
    "sharpness": "variance of the Laplacian of luminance at MEASURE_SIZE: near 0 when blurred",
    "shadows": "1st percentile of luminance: even the darkest pixels are light when this is high",
    "highlights": "99th percentile of luminance: even the brightest pixels are dark when this is low",
    "colourfulness": "99th percentile of the spread between largest and smallest channel: 0 when no pixel has colour",
    "phash": "perceptual hash (64 bits, hex): close for resized or re-encoded copies",
}


_KINDS = {OversizedImageError: "oversized", LfsPointerError: "lfs_pointer"}


def _measure(path: Path) -> dict:
    row: dict = dict.fromkeys(_COLUMNS)
    try:
        row["bytes"] = path.stat().st_size
        row["sha1"] = content_key(path)
        decoded = decode_image(path, MEASURE_SIZE)
    except OSError as error:
        row.update(error=error.strerror or str(error), error_kind="corrupt")
        return row
    except (OversizedImageError, LfsPointerError) as error:
        row.update(error=str(error), error_kind=_KINDS[type(error)])
        return row
    except ImageDecodeError as error:
        row.update(error=_reason(row["bytes"], error.__cause__ or error), error_kind="corrupt")
        return row
    pixels = decoded.pixels  # measured in place: a copy of a large image would double the pass's memory
    pixels.thumbnail(MEASURE_SIZE, Image.Resampling.BILINEAR)
    red, green, blue = (channel for channel in np.asarray(pixels, dtype=np.float32).transpose(2, 0, 1) / 255.0)
    luminance = 0.299 * red + 0.587 * green + 0.114 * blue
    row.update(
        width=decoded.width,
        height=decoded.height,
        mode=decoded.mode,
        format=decoded.format,
        red=float(red.mean()),
        green=float(green.mean()),
        blue=float(blue.mean()),
        brightness=float(luminance.mean()),
        contrast=float(luminance.std()),
        sharpness=float(_laplacian(luminance).var()),
        shadows=_percentile(luminance, 0.01),
        highlights=_percentile(luminance, 0.99),
        colourfulness=_percentile(
            np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue), 0.99
        ),
        phash=str(imagehash.phash(pixels)),
    )
    return row


def _percentile(values: np.ndarray, fraction: float) -> float:
    """A percentile of values in [0, 1] at 1/255 resolution, from a histogram rather than a sort: much faster."""
    cumulative = np.cumsum(np.bincount((values * 255).astype(np.uint8).ravel(), minlength=256)) / values.size
    return float(np.searchsorted(cumulative, fraction) / 255)


def _laplacian(image: np.ndarray) -> np.ndarray:
    return (
        4 * image[1:-1, 1:-1] - image[:-2, 1:-1] - image[2:, 1:-1] - image[1:-1, :-2] - image[1:-1, 2:]
        if min(image.shape) >= 3
        else np.zeros(1, dtype=image.dtype)
    )


def _reason(size: int, error: BaseException) -> str:
    """Say what is wrong in the user's terms rather than the decoder's."""
    text = str(error)
    if size == 0:
        return "empty file (0 bytes)"
    if "cannot identify image file" in text:
        return "not an image file despite its extension"
    if "truncated" in text:
        return f"truncated: the file ends before the image does ({text})"
    return f"cannot be decoded ({text})"
