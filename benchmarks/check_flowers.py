"""``retrain-ci check`` on flowers-dev: findings and seconds, cold and warm cache, and mislabel recall.

    python benchmarks/check_flowers.py [IMAGE_DIR] [--planted N] [--seeds K]

Cold: fresh bottleneck cache; warm: the same command again. Then, for each seed, a copy of the dataset (symbolic
links) with N photos moved to a random wrong class: how many of them ``suspected_mislabel`` reports (recall), and how
many of the photos left in place it reports (false-positive rate; some are mislabelled in the original dataset).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from datacheck.audit import audit_dataset
from datacheck.settings import AuditSettings
from retrain.core.settings import ModuleSettings
from retrain.training.bottlenecks import bottleneck_source

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers-dev"


def timed_check(image_dir: Path, bottleneck_dir: Path) -> tuple[float, dict]:
    command = [
        sys.executable, "-m", "retrain", "check", str(image_dir),
        "--bottleneck-dir", str(bottleneck_dir), "--format", "json", "--fail-on", "never",
    ]  # fmt: skip
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, json.loads(completed.stdout)


def planted_mislabels(image_dir: Path, bottleneck_dir: Path, planted: int, seed: int) -> tuple[float, float]:
    """Recall on the moved photos and the share of the other photos flagged."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "photos"
        photos = sorted(p for p in image_dir.rglob("*") if p.is_file())
        for photo in photos:
            (root / photo.parent.name).mkdir(parents=True, exist_ok=True)
            (root / photo.parent.name / photo.name).symlink_to(photo)
        classes = sorted(p.name for p in root.iterdir())
        moved = set()
        for photo in rng.sample(photos, planted):
            wrong = rng.choice([label for label in classes if label != photo.parent.name])
            (root / photo.parent.name / photo.name).rename(root / wrong / photo.name)
            moved.add(f"{wrong}/{photo.name}")
        settings = AuditSettings(module=ModuleSettings(bottleneck_dir=bottleneck_dir), only=("suspected_mislabel",))
        report = audit_dataset(root, settings, bottlenecks=bottleneck_source(settings.module))
        flagged = {path for finding in report.findings for path in finding.paths}
    return len(flagged & moved) / planted, len(flagged - moved) / (len(photos) - planted)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("image_dir", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--planted", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        bottleneck_dir = Path(scratch) / "bottlenecks"
        cold_seconds, report = timed_check(args.image_dir, bottleneck_dir)
        warm_seconds, _ = timed_check(args.image_dir, bottleneck_dir)
        print(f"data: {args.image_dir} ({report['summary']['images']} images)")
        print(f"findings: {report['summary']['findings']}")
        for check, count in report["summary"]["by_check"].items():
            print(f"  {check:20s} {count}")
        print(f"cold run (compute bottlenecks): {cold_seconds:6.1f} s")
        print(f"warm run (cached bottlenecks):  {warm_seconds:6.1f} s")
        results = [planted_mislabels(args.image_dir, bottleneck_dir, args.planted, seed) for seed in range(args.seeds)]
    recalls, false_positives = zip(*results, strict=True)
    print(f"{args.planted} planted mislabels, {args.seeds} seeds:")
    print(f"  recall {sum(recalls) / len(recalls):.0%} (worst {min(recalls):.0%})")
    print(
        f"  other photos flagged {sum(false_positives) / len(false_positives):.2%} (worst {max(false_positives):.2%})"
    )


if __name__ == "__main__":
    main()
