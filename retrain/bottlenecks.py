"""Bottlenecks: each image's feature vector under a module, computed in batches and cached on disk by content.

Entries are keyed by the SHA-1 of the image file's bytes, so a renamed or moved photo is reused and an edited one is
recomputed. The store is append-only shards of numpy arrays, one folder per module.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from retrain.dataset import LabeledImage
from retrain.errors import RetrainError
from retrain.images import ImageDecodeError, load_image

if TYPE_CHECKING:  # the cache itself needs no TensorFlow, so the dataset audit can use it without importing it
    from retrain.modules import ImageModule

BATCH_SIZE = 32
# Rows per shard: a killed run loses at most this many computed bottlenecks.
SHARD_ROWS = 512
KEY_DTYPE = "S40"


def content_key(path: Path) -> str:
    """SHA-1 of the file's bytes: the cache key of its bottleneck."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class BottleneckCache:
    """Shards ``<name>.vectors.npy`` + ``<name>.keys.npy`` under ``<root>/<module cache key>/``.

    The keys file is renamed into place last, after the vectors, and only shards with a keys file are read: a killed
    writer leaves at most a stray temporary file, and two runs writing at once each add their own shards.
    """

    def __init__(self, root: Path, module_key: str) -> None:
        self.directory = Path(root) / module_key

    def lookup(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys``."""
        wanted = set(keys)
        found: dict[str, np.ndarray] = {}
        for keys_file in sorted(self.directory.glob("*.keys.npy")):
            vectors_file = keys_file.with_name(keys_file.name.replace(".keys.npy", ".vectors.npy"))
            try:
                shard_keys = np.load(keys_file)
                vectors = np.load(vectors_file, mmap_mode="r")
            except (OSError, ValueError):
                continue  # unreadable shard: its entries are simply recomputed
            if vectors.ndim != 2 or len(vectors) != len(shard_keys):
                continue
            rows = [row for row, key in enumerate(shard_keys.astype(str)) if key in wanted and key not in found]
            for row, vector in zip(rows, np.asarray(vectors[rows]), strict=True):
                found[str(shard_keys[row], "ascii")] = vector
        return found

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store one shard atomically."""
        if not keys:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            _save_atomically(self.directory / f"{name}.vectors.npy", np.asarray(vectors, dtype=np.float32))
            _save_atomically(self.directory / f"{name}.keys.npy", np.array(keys, dtype=KEY_DTYPE))
        except OSError as error:
            raise RetrainError(f"cannot write bottlenecks to {self.directory} ({error.strerror})") from None


def _save_atomically(path: Path, array: np.ndarray) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".", suffix=".tmp", delete=False) as f:
        try:
            np.save(f, array)
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            os.unlink(f.name)
            raise
    os.replace(f.name, path)


@dataclass
class Bottlenecks:
    """Feature vectors of the images that could be read, row-aligned with ``images``."""

    images: list[LabeledImage]
    vectors: np.ndarray
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    computed: int = 0
    reused: int = 0

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray, list[LabeledImage]]:
        """Vectors, label indices and images of one split."""
        rows = [i for i, image in enumerate(self.images) if image.split == name]
        labels = np.array([self.images[i].label_index for i in rows], dtype=np.int64)
        return self.vectors[rows], labels, [self.images[i] for i in rows]


ProgressCallback = Callable[[int, int], None]


def compute_bottlenecks(
    images: Sequence[LabeledImage],
    module: ImageModule,
    cache: BottleneckCache,
    on_progress: ProgressCallback | None = None,
) -> Bottlenecks:
    """Bottlenecks for every image, from the cache where possible; unreadable images are skipped and reported."""
    skipped: list[tuple[Path, str]] = []
    keyed: list[tuple[LabeledImage, str]] = []
    for image in images:
        try:
            keyed.append((image, content_key(image.path)))
        except OSError as error:
            skipped.append((image.path, error.strerror or str(error)))
    vectors = cache.lookup(key for _, key in keyed)
    reused = len(vectors)
    missing = {key: image.path for image, key in keyed if key not in vectors}
    failures: dict[str, str] = {}
    vectors.update(_compute(missing, module, cache, failures, on_progress))
    kept = [(image, vectors[key]) for image, key in keyed if key in vectors]
    skipped.extend((image.path, failures[key]) for image, key in keyed if key in failures)
    matrix = np.stack([v for _, v in kept]) if kept else np.zeros((0, module.feature_size), np.float32)
    return Bottlenecks([image for image, _ in kept], matrix, skipped, len(vectors) - reused, reused)


def _compute(
    missing: dict[str, Path],
    module: ImageModule,
    cache: BottleneckCache,
    failures: dict[str, str],
    on_progress: ProgressCallback | None,
) -> Iterable[tuple[str, np.ndarray]]:
    """Decode in worker threads (two batches ahead, never all images at once) while the module runs."""
    items = list(missing.items())
    batches = [items[i : i + BATCH_SIZE] for i in range(0, len(items), BATCH_SIZE)]
    done = 0
    if on_progress:
        on_progress(done, len(items))
    unsaved_keys: list[str] = []
    unsaved_vectors: list[np.ndarray] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        queue = deque(pool.submit(_decode_batch, batch, module.image_size) for batch in batches[:2])
        next_batch = len(queue)
        while queue:
            decoded, batch_failures = queue.popleft().result()
            if next_batch < len(batches):
                queue.append(pool.submit(_decode_batch, batches[next_batch], module.image_size))
                next_batch += 1
            failures.update(batch_failures)
            if decoded:
                keys = [key for key, _ in decoded]
                features = np.asarray(module(np.stack([pixels for _, pixels in decoded])), dtype=np.float32)
                unsaved_keys.extend(keys)
                unsaved_vectors.extend(features)
                yield from zip(keys, features, strict=True)
            if len(unsaved_keys) >= SHARD_ROWS or (not queue and unsaved_keys):
                cache.add(unsaved_keys, np.stack(unsaved_vectors))
                unsaved_keys, unsaved_vectors = [], []
            done += len(decoded) + len(batch_failures)
            if on_progress:
                on_progress(done, len(items))


def _decode_batch(
    batch: list[tuple[str, Path]], size: tuple[int, int]
) -> tuple[list[tuple[str, np.ndarray]], dict[str, str]]:
    decoded, failures = [], {}
    for key, path in batch:
        try:
            decoded.append((key, load_image(path, size)))
        except ImageDecodeError as error:
            failures[key] = str(error.__cause__ or error)
    return decoded, failures
