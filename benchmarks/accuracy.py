"""Test accuracy and wall time of each head and fine-tuning configuration on flowers-dev, over three seeds.

    python benchmarks/accuracy.py [IMAGE_DIR] [--only NAME ...] [--seeds 0 1 2]

Every run is ``retrain-ci train IMAGE_DIR --testing-percentage 25`` (431 test photos on flowers-dev) in a
subprocess, sharing one bottleneck cache, so the first run of each backbone also pays for its bottlenecks.
The tutorial's own layer runs first as the baseline that the defaults are measured against.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers-dev"
# The tutorial's layer and its 4,000 steps (the default now follows the dataset's size: 1,000 here).
TUTORIAL_HEAD = [
    "--learning-rate", "0.01", "--learning-rate-schedule", "constant", "--no-tta", "--no-mirror-training",
    "--how-many-training-steps", "4000",
]  # fmt: skip
CONFIGURATIONS = {
    "lite0 tutorial head": ["--tfhub-module", "efficientnet_lite0", *TUTORIAL_HEAD],
    "lite0 default head": ["--tfhub-module", "efficientnet_lite0"],
    "lite2 tutorial head": ["--tfhub-module", "efficientnet_lite2", *TUTORIAL_HEAD],
    "lite2 default head": ["--tfhub-module", "efficientnet_lite2"],
    "lite0 --fine-tune": ["--tfhub-module", "efficientnet_lite0", "--fine-tune"],
    "lite1 --fine-tune": ["--tfhub-module", "efficientnet_lite1", "--fine-tune"],
}


def run(image_dir: Path, workdir: Path, name: str, seed: int) -> tuple[float, dict]:
    output_dir = workdir / f"{name.replace(' ', '_')}-{seed}"
    command = [
        sys.executable, "-m", "retrain", "train", str(image_dir),
        "--testing-percentage", "25", "--random-seed", str(seed), "--eval-step-interval", "4000",
        "--bottleneck-dir", str(workdir / "bottlenecks"), "--output-dir", str(output_dir),
        *CONFIGURATIONS[name],
    ]  # fmt: skip
    env = {**os.environ, "RETRAIN_CI_CACHE": str(workdir / "modules")}
    started = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    return seconds, json.loads((output_dir / "report" / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image_dir", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--only", nargs="+", choices=sorted(CONFIGURATIONS), default=list(CONFIGURATIONS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    arguments = parser.parse_args()
    print(f"data: {arguments.image_dir}, --testing-percentage 25, seeds {arguments.seeds}")
    print(f"{'configuration':22} {'test accuracy per seed':>28} {'mean':>7} {'spread':>7} {'wall s per seed':>22}")
    baseline = None
    with tempfile.TemporaryDirectory() as scratch:
        for name in arguments.only:
            results = []
            for seed in arguments.seeds:  # a run can take minutes: say each one as it ends, the table row comes after
                results.append(run(arguments.image_dir, Path(scratch), name, seed))
                wall, metrics = results[-1]
                accuracy = metrics["test_accuracy"]
                print(f"  {name}, seed {seed}: {accuracy:.4f} in {wall:.0f} s", file=sys.stderr, flush=True)
            accuracies = [metrics["test_accuracy"] for _, metrics in results]
            seconds = [f"{wall:.0f}" for wall, _ in results]
            test_images = results[0][1]["test_images"]
            average = mean(accuracies)
            baseline = baseline or average
            print(
                f"{name:22} {' '.join(f'{a:.4f}' for a in accuracies):>28} {average:7.4f} "
                f"{max(accuracies) - min(accuracies):7.4f} {' '.join(seconds):>22}"
                f"   (N={test_images}, {average / baseline:.3f}x the first row)",
                flush=True,
            )


if __name__ == "__main__":
    main()
