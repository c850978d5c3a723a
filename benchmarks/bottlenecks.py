"""Bottleneck speed, cache loading and memory, with every comparison measured in the same run.

    python benchmarks/bottlenecks.py [IMAGE_DIR]      (default: ../shared/data/flowers-dev)
    python benchmarks/bottlenecks.py --cache-load     (only: loading 100,000 cached bottlenecks, no TensorFlow)

Pipelines, all on the same files with the same backbone (EfficientNet-Lite0), each timed from files on disk:
  1. retrain-ci's default (fast) path: hashing, decoding, TFLite features, cached in shards;
  2. the tutorial's approach in plain TensorFlow: one file, one decode, one module call and one text file per image;
  3. a plain batched Keras pipeline: image_dataset_from_directory + Model.predict on the same module;
  and, for reference, retrain-ci with its plain TensorFlow runner (the fallback for modules that do not convert).
Then: fast vs TensorFlow features, a trained head's test predictions on both, warm-cache loading, loading 100,000
cached bottlenecks, 4000 training steps, and the peak RSS of `retrain-ci train` runs. The machine's load average is
printed with each timing: other processes on the same cores slow every number, ratios within one run less so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SYNTHETIC_ENTRIES = 100_000


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="retrain-ci-bench-"))
    try:
        if sys.argv[1:] == ["--cache-load"]:
            _cache_load(scratch, feature_size=1280)  # EfficientNet-Lite0's
        else:
            _benchmark(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA / "flowers-dev", scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _benchmark(image_dir: Path, scratch: Path) -> None:
    os.environ["RETRAIN_CI_CACHE"] = str(scratch / "modules")  # fresh module cache: conversions are timed below
    warnings.simplefilter("ignore")
    import tensorflow as tf

    from retrain.core.bottleneck_cache import BottleneckCache
    from retrain.core.dataset import list_dataset
    from retrain.core.settings import TrainingSettings
    from retrain.training.bottlenecks import compute_bottlenecks
    from retrain.training.features import cpu_count
    from retrain.training.head import LabeledVectors, train_head
    from retrain.training.modules import load_image_module
    from retrain.training.modules.runners import feature_runner

    print(f"data: {image_dir}; {cpu_count()} cores; TensorFlow {tf.__version__}; load average at start {_load()}")
    module = load_image_module("efficientnet_lite0")
    started = time.perf_counter()
    fast_runner = feature_runner(module)
    print(f"TFLite conversion (once per machine, cached): {time.perf_counter() - started:.1f} s")
    dataset = list_dataset(image_dir)
    count = len(dataset.images)

    cache = BottleneckCache(scratch / "bottlenecks", module.cache_key)
    fast, fast_rate = _pipeline(
        f"1. retrain-ci fast path ({fast_runner.engine}, {fast_runner.workers} workers)",
        count,
        lambda: compute_bottlenecks(dataset.images, module, cache, runner=fast_runner),
    )
    _, loop_rate = _pipeline(
        "2. per-image loop, plain TensorFlow", count, lambda: _tutorial_loop(dataset, module, scratch)
    )
    _, keras_rate = _pipeline("3. batched Keras pipeline", count, lambda: _keras_pipeline(image_dir, module))
    tf_cache = BottleneckCache(scratch / "tf-bottlenecks", module.cache_key)
    tf_runner = feature_runner(module, "tensorflow")
    reference, _ = _pipeline(
        "   retrain-ci, plain TensorFlow runner",
        count,
        lambda: compute_bottlenecks(dataset.images, module, tf_cache, runner=tf_runner),
    )
    print(f"ratio 1/2: {fast_rate / loop_rate:.2f}x (target >= 3)")
    print(f"ratio 1/3: {fast_rate / keras_rate:.2f}x (target >= 1.6)")
    print(f"absolute 1: {fast_rate:.0f} images/s (target >= 150 on 2 cores)")

    print(f"max abs difference, fast vs TensorFlow features: {np.abs(fast.vectors - reference.vectors).max():.2e}")
    train_x, train_y, _ = fast.split("training")
    validation_x, validation_y, _ = fast.split("validation")
    head, training_seconds = _timed(
        lambda: train_head(
            LabeledVectors(train_x, train_y),
            LabeledVectors(validation_x, validation_y),
            class_count=len(dataset.labels),
            settings=TrainingSettings(),
        )
    )
    fast_test, reference_test = fast.split("testing")[0], reference.split("testing")[0]
    same = int(np.sum(head.logits(fast_test).argmax(axis=1) == head.logits(reference_test).argmax(axis=1)))
    print(f"head trained on fast bottlenecks: same test prediction on fast and TF features {same}/{len(fast_test)}")
    print(f"training, 4000 steps: {training_seconds:.1f} s (load {_load()})")

    warm, warm_seconds = _timed(lambda: compute_bottlenecks(dataset.images, module, cache))
    assert warm.reused == len(warm.images)
    print(f"warm cache, compute_bottlenecks on {count} images (hash files + load): {warm_seconds:.2f} s")

    _cache_load(scratch, module.feature_size)

    for name, folder in (("cold", image_dir), ("warm", image_dir), ("cold, flowers-sample", DATA / "flowers-sample")):
        print(_train_run(name, folder, scratch))


def _cache_load(scratch: Path, feature_size: int) -> None:
    """Loading 100,000 cached bottlenecks (every shard's checksum verified), from 512-row shards and once merged."""
    synthetic = _synthetic_cache(scratch / "synthetic", feature_size)
    print(_load_in_subprocess(synthetic, SYNTHETIC_ENTRIES, f"from {len(synthetic.shards())} shards"))
    _, merge_seconds = _timed(synthetic.compact)
    print(f"merged into {len(synthetic.shards())} shard(s) in {merge_seconds:.1f} s")
    for entries in (SYNTHETIC_ENTRIES // 10, SYNTHETIC_ENTRIES):
        print(_load_in_subprocess(synthetic, entries, "after merging"))


def _tutorial_loop(dataset, module, scratch: Path) -> None:
    """retrain.py's first phase: per image, read the file, decode, resize, run the module, write a text file."""
    import tensorflow as tf

    height, width = module.image_size
    text_dir = scratch / "tutorial-bottlenecks"
    for image in dataset.images:
        decoded = tf.image.decode_jpeg(tf.io.read_file(str(image.path)), channels=3)
        resized = tf.image.resize(tf.image.convert_image_dtype(decoded, tf.float32)[None], (height, width))
        bottleneck = np.squeeze(module(resized).numpy())
        path = text_dir / image.path.parent.name / (image.path.name + ".txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(",".join(str(value) for value in bottleneck))


def _keras_pipeline(image_dir: Path, module) -> None:
    import tensorflow as tf

    images = tf.keras.utils.image_dataset_from_directory(
        image_dir, labels=None, image_size=module.image_size, batch_size=32, shuffle=False, verbose=False
    )
    images = images.map(lambda batch: batch / 255.0).prefetch(tf.data.AUTOTUNE)
    inputs = tf.keras.Input((*module.image_size, 3))
    outputs = tf.keras.layers.Lambda(lambda batch: module(batch), output_shape=(module.feature_size,))(inputs)
    tf.keras.Model(inputs, outputs).predict(images, verbose=0)


def _synthetic_cache(root: Path, feature_size: int):
    """100,000 random entries written as runs write them: 512-row shards."""
    from retrain.core.bottleneck_cache import BottleneckCache

    cache = BottleneckCache(root, "synthetic")
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for start in range(0, SYNTHETIC_ENTRIES, cache.shard_rows):
        keys = [f"{i:040x}" for i in range(start, min(start + cache.shard_rows, SYNTHETIC_ENTRIES))]
        cache.add(keys, rng.random((len(keys), feature_size), dtype=np.float32))
    written = time.perf_counter() - started
    shards = len(cache.shards())
    print(f"synthetic cache: {SYNTHETIC_ENTRIES} x {feature_size} written in {written:.1f} s as {shards} shards")
    return cache


LOADER = """
import sys, time
from pathlib import Path
import numpy as np
from retrain.core.bottleneck_cache import BottleneckCache
root, entries, width = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
keys = [f"{i:040x}" for i in np.random.default_rng(1).permutation(100_000)[:entries]]
status = lambda field: int(Path("/proc/self/status").read_text().split(field + ":")[1].split()[0])
before = status("VmRSS")
started = time.perf_counter()
out = np.empty((entries, width), np.float32)
found = BottleneckCache(root, "synthetic").read(keys, out).found
seconds = time.perf_counter() - started
print(found.sum(), f"{seconds:.2f}", (status("VmHWM") - before) // 1024, out.nbytes // 2**20)
"""

# Peak RSS as the kernel counts it for the process itself (VmHWM): ru_maxrss of a child also counts its parent's
# memory at fork, which here would be the benchmark's own.
TRAIN = """
import atexit, sys
from pathlib import Path
peak_file = Path(sys.argv[1])
atexit.register(lambda: peak_file.write_text(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]))
from retrain.cli import app
sys.argv = ["retrain-ci", *sys.argv[2:]]
app()
"""


def _load_in_subprocess(cache, entries: int, state: str) -> str:
    """Load ``entries`` random keys in a fresh process, so its peak RSS is the load's alone."""
    command = [sys.executable, "-c", LOADER, str(cache.directory.parent), str(entries), "1280"]
    output = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    found, seconds, grown, matrix = output
    return (
        f"load {found} of {entries} cached bottlenecks ({state}, random order, page cache warm): {seconds} s; "
        f"peak RSS grew {grown} MiB for a {matrix} MiB matrix (load {_load()})"
    )


def _train_run(name: str, image_dir: Path, scratch: Path) -> str:
    """`retrain-ci train` with the tutorial's defaults, and its peak RSS."""
    out = scratch / f"train-{name.split(',')[0]}-{image_dir.name}"
    peak_file = scratch / "peak-rss-kib"
    command = [
        sys.executable, "-c", TRAIN, str(peak_file), "train", str(image_dir), "--random-seed", "0",
        "--eval-step-interval", "4000", "--bottleneck-dir", str(scratch / f"cli-bottlenecks-{image_dir.name}"),
        "--output-dir", str(out),
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"retrain-ci train failed:\n{completed.stdout}{completed.stderr}")
    stdout = completed.stdout
    summary = r"(\d+) images.*?(\d+) computed, (\d+) from cache.*?\(([\d.]+) s\); training ([\d.]+) s"
    images, computed, cached, bottleneck_seconds, training_seconds = re.search(summary, stdout).groups()
    return (
        f"retrain-ci train, {name} ({images} images: {computed} computed, {cached} from cache): bottlenecks "
        f"{bottleneck_seconds} s, training {training_seconds} s, peak RSS {int(peak_file.read_text()) // 1024} MiB "
        f"(load {_load()})"
    )


def _timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def _pipeline(name: str, count: int, function):
    """Run a pipeline; print images/s and CPU time per image (which moves less when other processes share the cores)."""
    started, cpu_started = time.perf_counter(), _process_cpu_seconds()
    result = function()
    seconds, cpu_seconds = time.perf_counter() - started, _process_cpu_seconds() - cpu_started
    print(
        f"{name}: {count} images in {seconds:.1f} s = {count / seconds:.0f} images/s, "
        f"{1000 * cpu_seconds / count:.1f} CPU ms/image (load {_load()})",
        flush=True,
    )
    return result, count / seconds


def _process_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
