"""Bottlenecks with the local executor and with the Ray executor on this machine, in one run on the same files.

    python benchmarks/ray_executor.py [IMAGE_DIR]      (default: ../shared/data/flowers-dev)

Prints the Ray start-up seconds apart, then for each executor the images/s from files to cached vectors (each into a
fresh cache; the Ray job's time includes starting its actors, which import TensorFlow and build their interpreters,
but not the cluster), their ratio, the Ray job's rate once its first batch is back (its actors started), the CPU
milliseconds per image of the local executor (the cost the README's scaling section multiplies out), and the largest
difference between the two executors' vectors.
"""

from __future__ import annotations

import os
import shutil
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
    scratch = Path(tempfile.mkdtemp(prefix="retrain-ci-bench-"))
    try:
        _benchmark(image_dir, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _benchmark(image_dir: Path, scratch: Path) -> None:
    warnings.simplefilter("ignore")
    import ray

    from retrain.core.bottleneck_cache import BottleneckCache
    from retrain.core.dataset import list_dataset
    from retrain.core.hooks import Hooks
    from retrain.core.settings import ExecutionSettings
    from retrain.training.bottlenecks import compute_bottlenecks
    from retrain.training.modules import load_image_module
    from retrain.training.modules.runners import converted_module, cpu_count
    from retrain.training.ray_executor import connect

    images = list_dataset(image_dir).images
    module = load_image_module("efficientnet_lite0")
    converted_module(module)  # converted once, before either timing
    print(f"data: {image_dir}, {len(images)} images; {cpu_count()} cores; Ray {ray.__version__}; load {_load()}")

    started = time.perf_counter()
    connect("local")
    startup = time.perf_counter() - started
    print(f"Ray start-up (ray.init, local, {ray.cluster_resources()['CPU']:.0f} CPUs): {startup:.2f} s")

    cpu = time.process_time()
    started = time.perf_counter()
    local = compute_bottlenecks(images, module, BottleneckCache(scratch / "local", module.cache_key))
    local_seconds = time.perf_counter() - started
    cpu_per_image = (time.process_time() - cpu) / len(images)
    print(
        f"local executor: {len(images) / local_seconds:.1f} images/s ({local_seconds:.1f} s), "
        f"{cpu_per_image * 1000:.1f} CPU ms per image, load {_load()}"
    )

    progress: list[tuple[float, int]] = []
    hooks = Hooks(on_progress=lambda _stage, done, _total: progress.append((time.perf_counter(), done)))
    started = time.perf_counter()
    cache = BottleneckCache(scratch / "ray", module.cache_key)
    on_ray = compute_bottlenecks(images, module, cache, execution=ExecutionSettings("ray"), hooks=hooks)
    ray_seconds = time.perf_counter() - started
    print(f"Ray executor, this machine: {len(images) / ray_seconds:.1f} images/s ({ray_seconds:.1f} s), load {_load()}")
    print(f"ratio Ray / local: {local_seconds / ray_seconds:.2f}x (target >= 0.8x)")
    (first, first_done), (last, last_done) = next(step for step in progress if step[1] > 0), progress[-1]
    steady = (last_done - first_done) / (last - first)
    print(
        f"Ray job: first batch back after {first - started:.1f} s (actors starting); from then on "
        f"{steady:.1f} images/s, {steady / (len(images) / local_seconds):.2f}x local"
    )
    print(f"largest difference between the executors' vectors: {np.abs(on_ray.vectors - local.vectors).max():.2e}")
    ray.shutdown()


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


if __name__ == "__main__":
    main()
