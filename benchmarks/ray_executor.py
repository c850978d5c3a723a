"""Bottlenecks with the local executor and with the Ray executor on this machine, in one run on the same files.

    python benchmarks/ray_executor.py [IMAGE_DIR] [ROUNDS]   (default: ../shared/data/flowers-dev, 3 rounds)

Prints the cluster's start-up seconds apart: ``ray.init``, then the first Ray Data job's once-per-cluster actors (Ray
Data's detached stats and autoscaling actors, which a running cluster already has; measured with a 4-row job). Then
for each executor the images/s from files to cached vectors (each into a fresh cache; the Ray job's time includes
starting its own actors, which import Ray Data and build their interpreters), their ratio, the Ray job's rate once its
first batch is back (its actors started), the CPU milliseconds per image of the local executor (the cost the README's
scaling section multiplies out), and the largest difference between the two executors' vectors. Each round starts a
fresh cluster and uses fresh caches; the last line gives the median ratio, as one round moves with the machine's load.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def main() -> None:
    image_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else DATA / "flowers-dev"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    warnings.simplefilter("ignore")
    import ray

    from retrain.core.dataset import list_dataset
    from retrain.training.features import cpu_count
    from retrain.training.modules import load_image_module
    from retrain.training.modules.runners import converted_module

    images = list_dataset(image_dir).images
    module = load_image_module("efficientnet_lite0")
    converted_module(module)  # converted once, before any timing
    print(f"data: {image_dir}, {len(images)} images; {cpu_count()} cores; Ray {ray.__version__}; load {_load()}")
    ratios = []
    for round_number in range(1, rounds + 1):
        print(f"round {round_number} of {rounds}:")
        scratch = Path(tempfile.mkdtemp(prefix="retrain-ci-bench-"))
        try:
            ratios.append(_round(images, module, scratch))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    ratios_text = ", ".join(f"{ratio:.2f}" for ratio in ratios)
    print(
        f"ratio Ray / local, median of {rounds} rounds: {statistics.median(ratios):.2f}x "
        f"({ratios_text}; target >= 0.8x)"
    )


def _round(images, module, scratch: Path) -> float:
    """One fresh cluster, each executor into a fresh cache; returns the ratio of their rates."""
    import ray

    from retrain.core.bottleneck_cache import BottleneckCache
    from retrain.core.hooks import Hooks
    from retrain.core.settings import ExecutionSettings
    from retrain.training.bottlenecks import compute_bottlenecks
    from retrain.training.ray_executor import connect

    started = time.perf_counter()
    connect("local")
    startup = time.perf_counter() - started
    print(f"  Ray start-up (ray.init, local, {ray.cluster_resources()['CPU']:.0f} CPUs): {startup:.2f} s")
    started = time.perf_counter()
    ray.data.range(4).map_batches(lambda rows: rows).materialize()
    print(
        f"  Ray Data's once-per-cluster actors (a cluster's first Ray Data job): {time.perf_counter() - started:.2f} s"
    )

    cpu = time.process_time()
    started = time.perf_counter()
    local = compute_bottlenecks(images, module, BottleneckCache(scratch / "local", module.cache_key))
    local_seconds = time.perf_counter() - started
    cpu_per_image = (time.process_time() - cpu) / len(images)
    print(
        f"  local executor: {len(images) / local_seconds:.1f} images/s ({local_seconds:.1f} s), "
        f"{cpu_per_image * 1000:.1f} CPU ms per image, load {_load()}"
    )

    progress: list[tuple[float, int]] = []
    hooks = Hooks(on_progress=lambda _stage, done, _total: progress.append((time.perf_counter(), done)))
    started = time.perf_counter()
    cache = BottleneckCache(scratch / "ray", module.cache_key)
    on_ray = compute_bottlenecks(images, module, cache, execution=ExecutionSettings("ray"), hooks=hooks)
    ray_seconds = time.perf_counter() - started
    print(
        f"  Ray executor, this machine: {len(images) / ray_seconds:.1f} images/s ({ray_seconds:.1f} s), load {_load()}"
    )
    print(f"  ratio Ray / local: {local_seconds / ray_seconds:.2f}x")
    (first, first_done), (last, last_done) = next(step for step in progress if step[1] > 0), progress[-1]
    steady = (last_done - first_done) / (last - first)
    print(
        f"  Ray job: first batch back after {first - started:.1f} s (actors starting); from then on "
        f"{steady:.1f} images/s, {steady / (len(images) / local_seconds):.2f}x local"
    )
    print(f"  largest difference between the executors' vectors: {np.abs(on_ray.vectors - local.vectors).max():.2e}")
    ray.shutdown()
    return local_seconds / ray_seconds


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


if __name__ == "__main__":
    main()
