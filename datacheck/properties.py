"""The one decoding pass: every image file is read once and all per-image properties come out of it, as a table.

What is measured is registered: the shared statistics here, and each check's own ``Measurement``
(``Check.measurements``) in its module. The property cache's folder is named by what is registered, so changing one
measurement's version (or adding one) measures every image again, while an unchanged set reuses every cached row.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from retrain.core.content_keys import content_keys
from retrain.core.dataset import ClassFolder, FolderScan, split_for
from retrain.core.errors import ExecutorStopped
from retrain.core.images import DECODER_VERSION, ImageDecodeError, LfsPointerError, OversizedImageError, decode_image
from retrain.core.per_image import ItemMap, thread_map
from retrain.core.settings import SplitSettings
from retrain.core.shard_store import SHARD_ROWS, ShardStore

if TYPE_CHECKING:
    from datacheck.settings import AuditSettings

# Pixel statistics are measured at this size, so that sharpness and detail compare across photos of any size.
MEASURE_SIZE = (256, 256)

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Pixels:
    """A decoded image as measurements see it: scaled to fit MEASURE_SIZE, its RGB values (0..255), its channels
    and luminance (0..1), computed once for every measurement."""

    image: Image.Image
    values: np.ndarray
    red: np.ndarray
    green: np.ndarray
    blue: np.ndarray
    luminance: np.ndarray


@dataclass(frozen=True)
class Measurement:
    """Per-image values measured in the one decoding pass: ``measure`` returns one float per column.

    Bump ``version`` when what it measures changes: the property cache is named by every registered measurement's
    name and version, so its rows are then measured again.
    """

    name: str
    measure: Callable[[Pixels], dict[str, float]]
    columns: dict[str, str]  # column -> what it means
    version: int = 1


@dataclass
class ImageProperties:
    """The table of every image's properties, how many rows were measured or reused from the cache, and warnings."""

    table: pd.DataFrame
    computed: int = 0
    reused: int = 0
    warnings: list[str] = field(default_factory=list)  # one line each, for the shell to show (a damaged cache shard)


def property_cache(settings: AuditSettings) -> ShardStore:
    """Where measured rows are kept, by content key: ``properties-<digest>-d<decoder>/`` under ``--property-cache``, by
    default beside the bottlenecks (so whatever keeps the bottleneck cache between CI runs keeps this one too)."""
    folder = f"properties-{properties_version()}-d{DECODER_VERSION}"
    return ShardStore(settings.cache_root / folder, dtype=record_dtype(), what="image properties")


@functools.cache
def measurements() -> tuple[Measurement, ...]:
    """The shared statistics, then every registered check's measurements, in report order; two checks may share one
    measurement, but no two measurements a name or a column."""
    from datacheck.registry import registered_checks

    found = {SHARED.name: SHARED}
    for check in registered_checks().values():
        for measurement in check.measurements:
            if found.setdefault(measurement.name, measurement) is not measurement:
                raise ValueError(f"check {check.id!r} declares another measurement named {measurement.name!r}")
    owners: dict[str, str] = {}
    for measurement in found.values():
        for column in measurement.columns:
            if owners.setdefault(column, measurement.name) != measurement.name or column in _IDENTITY:
                raise ValueError(f"measurement {measurement.name!r} adds column {column!r}, which is already measured")
    return tuple(found.values())


def properties_version() -> str:
    """What the cached rows hold: a digest of every registered measurement's name, version and columns."""
    text = "\n".join(f"{m.name}:{m.version}:{','.join(m.columns)}" for m in measurements())
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def image_properties(
    scan: FolderScan,
    split: SplitSettings,
    on_progress: ProgressCallback | None = None,
    *,
    cache: ShardStore | None = None,
    per_image: ItemMap = thread_map,
) -> ImageProperties:
    """One row per image file of every class, in scan order: where it is, its split, its content and pixel statistics.

    A file that cannot be decoded gets its reason in ``error`` and missing statistics; it never stops the pass.
    Rows found in ``cache`` under the file's content key are reused; only the others are decoded (by ``per_image``:
    here, or on a Ray cluster), and then cached by this process.
    """
    files = [(folder.label, path) for folder in scan.classes for path in folder.images]
    keys = content_keys([path for _, path in files], cache.directory.parent if cache is not None else None)
    table = _Columns(len(files))
    for index, key in enumerate(keys):
        if isinstance(key, OSError):
            table.update(index, {"error": key.strerror or str(key), "error_kind": "corrupt"})
        else:
            table["sha1"][index] = key
    result = _reuse(table, cache)
    missing = [index for index in range(len(files)) if table["error"][index] is None and table["width"][index] is None]
    for index in missing:  # a reused row has its size from the cache
        table.update(index, _size(files[index][1]))
    missing = [index for index in missing if table["error"][index] is None]
    if on_progress:
        on_progress(len(files) - len(missing), len(files))
    unsaved: list[int] = []
    measured = per_image(measured_row, [(index, (files[index][1], table["bytes"][index])) for index in missing])
    try:
        for done, (index, row) in enumerate(measured, start=len(files) - len(missing) + 1):
            table.update(index, row)
            unsaved.append(index)
            if cache is not None and len(unsaved) >= SHARD_ROWS:  # a killed audit keeps what it saved
                _save(cache, table, unsaved, files)
                unsaved = []
            if on_progress and (done % 32 == 0 or done == len(files)):
                on_progress(done, len(files))
    except ExecutorStopped:  # keep what the executor returned, so that running again measures only the rest
        if cache is not None:
            _save(cache, table, unsaved, files)
        raise
    if cache is not None:
        _save(cache, table, unsaved, files)
        cache.compact()
    result.computed = len(missing)
    frame = pd.DataFrame(table)
    frame.insert(0, "path", [name for folder in scan.classes for name in _relative(folder, scan.root)])
    frame.insert(1, "label", [label for label, _ in files])
    frame.insert(
        2, "split", [split_for(path, split.testing_percentage, split.validation_percentage) for _, path in files]
    )
    result.table = frame
    return result


def _relative(folder: ClassFolder, root: Path) -> list[str]:
    """The folder's images as the table names them, relative to ``root``: one ``relative_to`` per folder, not per
    image (the scan joined each image to its folder's path)."""
    prefix, inside = folder.folder.relative_to(root).as_posix(), len(str(folder.folder)) + 1
    return [f"{prefix}/{str(path)[inside:].replace(os.sep, '/')}" for path in folder.images]


class _Columns(dict):
    """The table being filled, a list of values per column (None until known): column by column, so that 100,000
    cached rows are copied a field at a time rather than a row at a time."""

    def __init__(self, length: int) -> None:
        super().__init__((name, [None] * length) for name in columns())

    def row(self, index: int) -> dict:
        return {name: values[index] for name, values in self.items()}

    def update(self, index: int, row: dict) -> None:  # type: ignore[override]  # one row's values, not a mapping
        for name, value in row.items():
            self[name][index] = value


def _size(path: Path) -> dict:
    """The file's size, or why it cannot be read (it vanished since it was listed)."""
    try:
        return {"bytes": path.stat().st_size}
    except OSError as error:
        return {"error": error.strerror or str(error), "error_kind": "corrupt"}


# A row's columns before the measured ones, after path, label and split; what each means.
_IDENTITY = {
    "bytes": "file size",
    "sha1": "content key, as the bottleneck cache keys it",
    "error": "why the file could not be decoded, else None (and no statistics)",
    "error_kind": "what kind of reason `error` is: corrupt, oversized (too many pixels to decode) or lfs_pointer",
    "width": "pixels, as displayed (after EXIF orientation)",
    "height": "pixels, as displayed (after EXIF orientation)",
    "mode": "the file's own colour mode: RGB, L, CMYK, RGBA, P, ...",
    "format": "the file's actual format (JPEG, PNG, ...), whatever its extension",
}


def _shared(pixels: Pixels) -> dict:
    red, green, blue, luminance = pixels.red, pixels.green, pixels.blue, pixels.luminance
    return dict(
        red=float(red.mean()),
        green=float(green.mean()),
        blue=float(blue.mean()),
        brightness=float(luminance.mean()),
        contrast=float(luminance.std()),
        shadows=_percentile(luminance, 0.01),
        highlights=_percentile(luminance, 0.99),
        colourfulness=_percentile(
            np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue), 0.99
        ),
        phash=str(imagehash.phash(pixels.image)),
    )


# The statistics several checks read (dark, light, low_information, grayscale, near_duplicates, shortcut_bias, ...).
SHARED = Measurement(
    "shared",
    _shared,
    {
        "red": "mean red, 0..1",
        "green": "mean green, 0..1",
        "blue": "mean blue, 0..1",
        "brightness": "mean luminance, 0..1",
        "contrast": "standard deviation of luminance: near 0 for a blank image",
        "shadows": "1st percentile of luminance: even the darkest pixels are light when this is high",
        "highlights": "99th percentile of luminance: even the brightest pixels are dark when this is low",
        "colourfulness": "99th percentile of the spread between largest and smallest channel: 0 when no pixel has "
        "colour",
        "phash": "perceptual hash (64 bits, hex): close for resized or re-encoded copies",
    },
    version=2,
)


@functools.cache
def columns() -> dict[str, str]:
    """Every column of a row but path, label and split, and what each means."""
    return _IDENTITY | {name: meaning for m in measurements() for name, meaning in m.columns.items()}


_KINDS = {OversizedImageError: "oversized", LfsPointerError: "lfs_pointer"}


def measured_row(path: Path, size: int) -> dict:
    """Decode the file of ``size`` bytes: the rest of its row, the statistics or why it could not be decoded.

    A plain function of its arguments, so that a Ray worker runs it as this process would.
    """
    try:
        decoded = decode_image(path, MEASURE_SIZE)
    except OSError as error:
        return {"error": error.strerror or str(error), "error_kind": "corrupt"}
    except (OversizedImageError, LfsPointerError) as error:
        return {"error": str(error), "error_kind": _KINDS[type(error)]}
    except ImageDecodeError as error:
        return {"error": _reason(size, error.__cause__ or error), "error_kind": "corrupt"}
    image = decoded.pixels  # measured in place: a copy of a large image would double the pass's memory
    image.thumbnail(MEASURE_SIZE, Image.Resampling.BILINEAR)
    values = np.asarray(image)
    red, green, blue = (channel for channel in values.astype(np.float32).transpose(2, 0, 1) / 255.0)
    pixels = Pixels(image, values, red, green, blue, 0.299 * red + 0.587 * green + 0.114 * blue)
    row = dict(width=decoded.width, height=decoded.height, mode=decoded.mode, format=decoded.format)
    for measurement in measurements():
        row.update(measurement.measure(pixels))
    return row


# A cached row: the measured columns but the key (the store's own) as fixed-width fields; floats as float64, so a
# reused row is the measured one to the bit and findings are the same cold or warm. Strings are UTF-8.
_TEXT = {"error": "S400", "error_kind": "S16", "mode": "S16", "format": "S16", "phash": "S16"}
_INTEGERS = ("bytes", "width", "height")


@functools.cache
def record_dtype() -> np.dtype:
    return np.dtype(
        [(name, _TEXT.get(name, "<i8" if name in _INTEGERS else "<f8")) for name in columns() if name != "sha1"]
    )


def _reuse(table: _Columns, cache: ShardStore | None) -> ImageProperties:
    """Fill in the rows whose content the cache holds, a column at a time; the counts and the cache's warnings."""
    result = ImageProperties(pd.DataFrame())
    keys = sorted({key for key in table["sha1"] if key is not None})
    if cache is None or not keys:
        return result
    records = np.zeros((len(keys), 1), record_dtype())
    read = cache.read(keys, records)
    position = {key: at for at, (key, found) in enumerate(zip(keys, read.found, strict=True)) if found}
    rows = [row for row, key in enumerate(table["sha1"]) if key in position]
    found = records[[position[table["sha1"][row]] for row in rows], 0]
    failed = (found["error"] != b"").tolist()  # a file that could not be decoded has no statistics: they stay None
    for name in record_dtype().names:
        values = _values(name, found[name])
        if name not in ("bytes", "error", "error_kind"):
            values = [None if bad else value for value, bad in zip(values, failed, strict=True)]
        column = table[name]
        for row, value in zip(rows, values, strict=True):
            column[row] = value
    result.reused = len(rows)
    result.warnings = [
        f"ignored damaged image-properties shard {shard} ({reason}); its entries were measured again"
        for shard, reason in read.damaged
    ]
    return result


def _values(name: str, field: np.ndarray) -> list:
    """A cached field's values as measured: text as str (None where empty), integers as int, floats as float."""
    if name in _TEXT:
        return [value.decode() or None for value in field.tolist()]
    return field.tolist()


def _save(cache: ShardStore, table: _Columns, indices: list[int], files: list[tuple[str, Path]]) -> None:
    """Cache the measured rows, but for a reason that names the file (it would be wrong for a copy elsewhere)."""
    fresh = {}
    for index in indices:
        row, path = table.row(index), files[index][1]
        if (
            path.name not in (row["error"] or "")
            and len((row["error"] or "").encode()) <= record_dtype()["error"].itemsize
        ):
            fresh[row["sha1"]] = _to_record(row)
    if fresh:
        cache.add(list(fresh), np.array(list(fresh.values()), record_dtype()).reshape(-1, 1))


def _to_record(row: dict) -> tuple:
    values = []
    for name in record_dtype().names:
        value = row[name]
        if name in _TEXT:
            values.append((value or "").encode())
        elif name in _INTEGERS:
            values.append(-1 if value is None else value)
        else:
            values.append(np.nan if value is None else value)
    return tuple(values)


def _percentile(values: np.ndarray, fraction: float) -> float:
    """A percentile of values in [0, 1] at 1/255 resolution, from a histogram rather than a sort: much faster."""
    cumulative = np.cumsum(np.bincount((values * 255).astype(np.uint8).ravel(), minlength=256)) / values.size
    return float(np.searchsorted(cumulative, fraction) / 255)


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
