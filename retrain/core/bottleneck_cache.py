"""The bottleneck cache: each image's feature vector under a module, stored on disk by the content of the file.

Entries are keyed by the SHA-1 of the image file's bytes, so a renamed or moved photo is reused and an edited one is
recomputed; one folder per module of a ``ShardStore`` (``retrain.core.shard_store``), which also holds the audit's
per-image properties.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retrain.core.content_keys import content_keys
from retrain.core.dataset import LabeledImage
from retrain.core.hooks import Hooks
from retrain.core.shard_store import MAX_SMALL_SHARDS, SHARD_ROWS, SHARD_SUFFIX, Pruned, ShardStore


class BottleneckCache(ShardStore):
    """Bottleneck vectors of one module, in ``<root>/<module cache key>/``; the content keys of files in ``root``."""

    def __init__(
        self, root: Path, module_key: str, shard_rows: int = SHARD_ROWS, max_small_shards: int = MAX_SMALL_SHARDS
    ) -> None:
        self.root = Path(root)
        super().__init__(Path(root) / module_key, shard_rows=shard_rows, max_small_shards=max_small_shards)

    def add(self, keys: Sequence[str], rows: np.ndarray) -> None:
        """Store one shard atomically; ValueError for a non-finite vector (a NaN must be recomputed, never reused)."""
        if len(keys) and not np.isfinite(rows).all():
            raise ValueError("a bottleneck vector is not finite (NaN or infinity); it must not be cached")
        super().add(keys, rows)


@dataclass
class Bottlenecks:
    """Feature vectors of the images that could be read, row-aligned with ``images`` (the very ``LabeledImage``
    objects asked for, in their order, less the skipped ones)."""

    images: list[LabeledImage]
    vectors: np.ndarray
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    computed: int = 0
    reused: int = 0
    content_keys: list[str] = field(default_factory=list)  # row-aligned with ``images``: SHA-1 of each file
    warnings: list[str] = field(default_factory=list)  # one line each, for the shell to show (a damaged cache shard)


# (images, hooks) -> their bottlenecks: how the audit asks the training engine for them without importing it.
BottleneckSource = Callable[[Sequence[LabeledImage], Hooks], Bottlenecks]


def cache_folders(root: Path) -> list[Path]:
    """Every store under a cache root: one folder per module (and its mirrored twin), and the audit's properties."""
    return sorted({shard.parent for shard in Path(root).glob("*/*" + SHARD_SUFFIX)})


def prune_caches(roots: Sequence[Path], images: Sequence[Path]) -> dict[Path, Pruned]:
    """Drop from every store under ``roots`` the entries of content none of ``images`` has, per store folder.

    A file that cannot be read has no key, so its entries go too: they are recomputed if it comes back.
    """
    keep = {key for key in content_keys(images, roots[0] if roots else None) if isinstance(key, str)}
    folders = sorted({folder for root in roots for folder in cache_folders(root)})
    return {folder: ShardStore(folder).prune(keep) for folder in folders}
