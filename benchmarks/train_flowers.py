"""End-to-end seconds of ``retrain-ci train`` on flowers-dev, cold cache vs warm cache, in one run.

    python benchmarks/train_flowers.py [IMAGE_DIR]

Cold: fresh module cache (backbone conversion) and fresh bottleneck cache. Warm: the same command again.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers-dev"


def run(image_dir: Path, workdir: Path) -> tuple[float, str]:
    command = [
        sys.executable, "-m", "retrain", "train", str(image_dir),
        "--bottleneck-dir", str(workdir / "bottlenecks"), "--output-dir", str(workdir / "out"),
        "--random-seed", "0", "--eval-step-interval", "1000",
    ]  # fmt: skip
    env = {**os.environ, "RETRAIN_CI_CACHE": str(workdir / "modules")}
    started = time.perf_counter()
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, completed.stdout


def main() -> None:
    image_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DATA
    with tempfile.TemporaryDirectory() as scratch:
        cold_seconds, cold = run(image_dir, Path(scratch))
        warm_seconds, warm = run(image_dir, Path(scratch))
    images, bottleneck_seconds = re.search(r"bottlenecks: (\d+) computed.*?\(([\d.]+) s\)", cold).groups()
    accuracy = re.search(r"Final test accuracy = ([\d.]+%) \(N=(\d+)\)", warm)
    print(f"data: {image_dir}")
    print(f"cold run (convert backbone, compute {images} bottlenecks, train, export): {cold_seconds:6.1f} s")
    print(f"  bottlenecks: {bottleneck_seconds} s = {int(images) / float(bottleneck_seconds):.0f} images/s")
    print(f"warm run (cached bottlenecks):                                  {warm_seconds:6.1f} s")
    print(f"cold/warm ratio: {cold_seconds / warm_seconds:.1f}x")
    print(f"test accuracy: {accuracy[1]} of {accuracy[2]} test images")


if __name__ == "__main__":
    main()
