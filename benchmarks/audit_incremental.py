"""The incremental audit on flowers-dev: a cold ``retrain-ci check``, then a re-audit after adding 20 photos.

    python benchmarks/audit_incremental.py [IMAGE_DIR] [--added 20]

Pixel checks only (``--skip suspected_mislabel,outlier``, the checks that need bottlenecks), so no TensorFlow. The
dataset is copied to a temp folder with a fresh property cache; the cold audit decodes every photo, the re-audit only
the added ones (crops of existing photos, mirrored and re-encoded: new content). Prints the seconds of each, as the
command takes them (a process each) and as the audit reports them, the images decoded and reused, and the ratios.
Twice: with every pixel check, then without ``shortcut_bias``, whose cross-validated forest over the whole table is a
fixed cost that no cache saves (the table changed), so that the second pair shows what the property cache itself does.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def timed_check(image_dir: Path, cache: Path, skip: str) -> tuple[float, dict]:
    command = [
        sys.executable, "-m", "retrain", "check", str(image_dir), "--property-cache", str(cache),
        "--skip", skip, "--format", "json", "--fail-on", "never",
    ]  # fmt: skip
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, json.loads(completed.stdout)


def add_new_photos(root: Path, count: int) -> int:
    """Add ``count`` new photos to ``root``: the centre of existing ones, mirrored and re-encoded, in their class."""
    photos = sorted(root.rglob("*.jpg"))[:: max(1, len(list(root.rglob("*.jpg"))) // count)][:count]
    for photo in photos:
        with Image.open(photo) as image:
            width, height = image.size
            crop = image.crop((width // 8, height // 8, width - width // 8, height - height // 8))
            crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(photo.with_name(f"added-{photo.name}"), quality=85)
    return len(photos)


def incremental(image_dir: Path, added: int, skip: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root, cache = Path(scratch) / "photos", Path(scratch) / "cache"
        shutil.copytree(image_dir, root)
        cold_seconds, cold = timed_check(root, cache, skip)
        added = add_new_photos(root, added)
        warm_seconds, warm = timed_check(root, cache, skip)
    print(f"--skip {skip}: {cold['summary']['images']} photos, then {added} added; load {os.getloadavg()[0]:.1f}")
    for name, seconds, report in (("cold", cold_seconds, cold), ("re-audit", warm_seconds, warm)):
        counts = report["summary"]["properties"]
        print(
            f"{name:>10}: {seconds:6.2f} s command, {report['summary']['seconds']:6.2f} s audit; "
            f"decoded {counts['computed']}, reused {counts['reused']}"
        )
    print(
        f"  re-audit / cold: {warm_seconds / cold_seconds:.2f} (command), "
        f"{warm['summary']['seconds'] / cold['summary']['seconds']:.2f} (audit)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("image_dir", nargs="?", type=Path, default=DATA / "flowers-dev")
    parser.add_argument("--added", type=int, default=20)
    args = parser.parse_args()
    for skip in ("suspected_mislabel,outlier", "suspected_mislabel,outlier,shortcut_bias"):
        incremental(args.image_dir, args.added, skip)


if __name__ == "__main__":
    main()
