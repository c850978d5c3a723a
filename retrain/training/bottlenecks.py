"""Computing bottlenecks: each image's feature vector under a module, in batches, through the content-keyed cache."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from retrain.core.bottleneck_cache import BottleneckCache, Bottlenecks, BottleneckSource
from retrain.core.content_keys import content_keys
from retrain.core.dataset import LabeledImage
from retrain.core.errors import ExecutorStopped
from retrain.core.hooks import Hooks
from retrain.core.settings import ExecutionSettings, ModuleSettings
from retrain.core.shard_store import VECTOR_DTYPE
from retrain.training.executors import executor_for
from retrain.training.features import Batch, FeatureRunner
from retrain.training.modules.bundled import ConvertedBackbone, converted_backbone

if TYPE_CHECKING:  # loading a module imports TensorFlow, which a re-audit with a converted backbone does without
    from retrain.training.modules import ImageModule

ProgressCallback = Callable[[int, int], None]


def compute_bottlenecks(
    images: Sequence[LabeledImage],
    module: ImageModule | ConvertedBackbone,
    cache: BottleneckCache,
    *,
    hooks: Hooks = Hooks(),
    runner: FeatureRunner | None = None,
    mirrored: bool = False,
    execution: ExecutionSettings = ExecutionSettings(),
) -> Bottlenecks:
    """Bottlenecks for every image, from the cache where possible; unreadable images are skipped and reported.

    ``runner`` defaults to the fastest one for the module (``feature_runner``), created only if something is missing.
    With ``mirrored``, they are the bottlenecks of the left-right mirrored images (keep them in a cache of their own).
    ``execution`` says where the missing ones are computed; this process writes them to the cache either way.
    """
    skipped: list[tuple[Path, str]] = []
    keys = content_keys([image.path for image in images], cache.root)  # read only where not known from a past run
    row_of: dict[str, int] = {}
    paths: list[Path] = []
    for image, key in zip(images, keys, strict=True):
        if isinstance(key, OSError):
            skipped.append((image.path, key.strerror or str(key)))
        elif key not in row_of:
            row_of[key] = len(paths)
            paths.append(image.path)
    unique_keys = list(row_of)
    vectors = np.empty((len(unique_keys), module.feature_size), VECTOR_DTYPE)
    read = cache.read(unique_keys, vectors)
    cached = read.found
    missing = [(row, paths[row]) for row in np.flatnonzero(~cached).tolist()]
    on_progress = hooks.progress("Computing bottlenecks")
    on_progress(0, len(missing))  # also when nothing is missing: callers show or skip a bar for zero
    failures: dict[str, str] = {}
    if missing:
        batches = executor_for(execution).bottleneck_batches(missing, module, runner, mirrored)
        work = _Work(missing, unique_keys, batches)
        failures = work.fill(vectors, cache, on_progress)
    kept = [(image, row_of[key]) for image, key in zip(images, keys, strict=True) if key in row_of]
    # A copy's reason was found decoding the first file of its content: it must name the copy, not that file.
    skipped.extend(
        (image.path, failures[unique_keys[row]].replace(str(paths[row]), str(image.path)))
        for image, row in kept
        if unique_keys[row] in failures
    )
    kept = [(image, row) for image, row in kept if unique_keys[row] not in failures]
    rows = [row for _, row in kept]
    if rows != list(range(len(vectors))):  # duplicates or failures: copy into image order
        vectors = vectors[rows]
    computed = len(missing) - len(failures)
    kept_keys = [unique_keys[row] for row in rows]
    warnings = [
        f"ignored damaged bottleneck shard {shard} ({reason}); its entries were recomputed"
        for shard, reason in read.damaged
    ]
    return Bottlenecks([image for image, _ in kept], vectors, skipped, computed, int(cached.sum()), kept_keys, warnings)


def bottleneck_source(settings: ModuleSettings, execution: ExecutionSettings = ExecutionSettings()) -> BottleneckSource:
    """Bottlenecks under the module and cache the settings name, for the audit (the module loads on first use; a
    bundled backbone whose TFLite form is cached runs with LiteRT alone, without TensorFlow)."""

    def bottlenecks(images: Sequence[LabeledImage], hooks: Hooks) -> Bottlenecks:
        converted = converted_backbone(settings.tfhub_module) if execution.executor == "local" else None
        if converted is not None:
            cache = BottleneckCache(settings.bottleneck_dir, converted.cache_key)
            return compute_bottlenecks(images, converted, cache, hooks=hooks, runner=converted.runner())
        from retrain.training.modules import load_image_module
        from retrain.training.quiet import import_tensorflow_quietly

        import_tensorflow_quietly()
        module = load_image_module(settings.tfhub_module, settings.image_size)
        cache = BottleneckCache(settings.bottleneck_dir, module.cache_key)
        return compute_bottlenecks(images, module, cache, hooks=hooks, execution=execution)

    return bottlenecks


class _Work:
    """The rows the cache lacks: (row, path) pairs, whose computed batches are saved as they complete."""

    def __init__(self, missing: list[tuple[int, Path]], keys: list[str], batches: Iterator[Batch]):
        self.missing = missing
        self.keys = keys
        self.batches = batches

    def fill(self, vectors: np.ndarray, cache: BottleneckCache, on_progress: ProgressCallback) -> dict[str, str]:
        """Fill the missing rows of ``vectors``, saving a shard every ``cache.shard_rows`` rows; merge shards at the
        end. Returns the reason each image (by content key) failed: undecodable, or NaN features (never cached)."""
        failures: dict[str, str] = {}
        done = 0
        unsaved: list[int] = []
        try:
            for rows, features, batch_failures in self.batches:
                vectors[rows] = features
                failures.update((self.keys[row], reason) for row, reason in batch_failures)
                unsaved.extend(rows)
                if len(unsaved) >= cache.shard_rows:
                    cache.add([self.keys[row] for row in unsaved], vectors[unsaved])
                    unsaved = []
                done += len(rows) + len(batch_failures)
                on_progress(done, len(self.missing))
        except ExecutorStopped:  # keep what the executor returned, so that running again computes only the rest
            cache.add([self.keys[row] for row in unsaved], vectors[unsaved])
            raise
        cache.add([self.keys[row] for row in unsaved], vectors[unsaved])
        cache.compact()
        return failures
