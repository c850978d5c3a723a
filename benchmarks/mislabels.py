"""``suspected_mislabel`` on labels moved by a seeded draw: scikit-learn's handwritten digits and flowers-dev.

    python benchmarks/mislabels.py [IMAGE_DIR] [--seeds 0 1 2 3 4 5] [--digits-fraction 0.02] [--flowers-planted 20]

For each seed: the 1,797 digits as PNG files with 2% of them filed under another digit, and a copy of IMAGE_DIR
(symbolic links) with 20 photos moved to another class. Prints how many of the moved files the check reports (recall)
and the share of the files left in place that it reports (flagged). Seed 0 is the choice seed: alternatives to the check
are compared on it, so its numbers are optimistic; the other seeds play no part in choosing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from datacheck.audit import audit_dataset
from datacheck.settings import AuditSettings
from retrain.core.settings import ModuleSettings
from retrain.training.bottlenecks import bottleneck_source

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from defects import digits_dataset, moved_labels  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers-dev"
CHOICE_SEED = 0  # the seed alternatives are compared on


def flowers_dataset(image_dir: Path, root: Path, *, planted: int, seed: int) -> list[str]:
    """Symbolic links to every photo of ``image_dir``, ``planted`` of them under another class. Returns those."""
    photos = sorted(p for p in image_dir.rglob("*") if p.is_file())
    given = moved_labels([photo.parent.name for photo in photos], planted / len(photos), seed)
    moved = []
    for photo, label in zip(photos, given, strict=True):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / photo.name).symlink_to(photo)
        if label != photo.parent.name:
            moved.append(f"{label}/{photo.name}")
    return moved


def measured(root: Path, moved: list[str], bottleneck_dir: Path) -> tuple[float, float, float]:
    """Recall on the moved files, share of the other files flagged, and the audit's seconds."""
    settings = AuditSettings(module=ModuleSettings(bottleneck_dir=bottleneck_dir), only=("suspected_mislabel",))
    started = time.perf_counter()
    report = audit_dataset(root, settings, bottlenecks=bottleneck_source(settings.module))
    seconds = time.perf_counter() - started
    flagged = {path for finding in report.findings for path in finding.paths}
    files = sum(1 for path in root.rglob("*") if not path.is_dir())
    return len(flagged & set(moved)) / len(moved), len(flagged - set(moved)) / (files - len(moved)), seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("image_dir", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--digits-fraction", type=float, default=0.02)
    parser.add_argument("--flowers-planted", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        bottleneck_dir = Path(scratch) / "bottlenecks"
        for name in ("digits", "flowers"):
            fresh = []
            for seed in args.seeds:
                root = Path(scratch) / f"{name}-{seed}"
                if name == "digits":
                    moved = digits_dataset(root, moved_fraction=args.digits_fraction, seed=seed)
                else:
                    moved = flowers_dataset(args.image_dir, root, planted=args.flowers_planted, seed=seed)
                recall, flagged, seconds = measured(root, moved, bottleneck_dir)
                role = "choice (optimistic)" if seed == CHOICE_SEED else "fresh"
                print(
                    f"{name:8s} seed {seed} {role:20s} moved {len(moved):3d}  recall {recall:6.1%}  "
                    f"flagged {flagged:6.2%}  {seconds:5.1f} s",
                    flush=True,
                )
                if seed != CHOICE_SEED:
                    fresh.append((recall, flagged))
            if fresh:
                recalls, flags = zip(*fresh, strict=True)
                print(
                    f"{name:8s} fresh seeds: recall {sum(recalls) / len(recalls):.1%} (worst {min(recalls):.1%}), "
                    f"flagged {sum(flags) / len(flags):.2%} (worst {max(flags):.2%})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
