"""What verifying look-alike pairs costs, and how it grows with the number of candidates.

    python benchmarks/picture_match.py [IMAGE_DIR] [--margins 0.15 0.1 0.05 0.0]

Computes IMAGE_DIR's bottlenecks and properties once (its own caches), then for each bottleneck margin (the candidate
rule's ``near-duplicate-margin``; 0.05 is the default) prints the candidate pairs, the seconds to verify them all with a
fresh matcher (keypoints included), the milliseconds per pair, and how many were one picture and one scene.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from datacheck.audit import audit_data
from datacheck.checks.duplicates import NEIGHBOURS, candidate_pairs, verify_pairs
from datacheck.picture_match import ONE_PICTURE, ONE_SCENE, PictureMatcher
from datacheck.settings import AuditSettings
from retrain.training.bottlenecks import bottleneck_source

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers-dev"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("image_dir", type=Path, nargs="?", default=DEFAULT_DATA)
    parser.add_argument("--margins", type=float, nargs="+", default=[0.15, 0.1, 0.05, 0.0])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        settings = AuditSettings().replace(bottleneck_dir=Path(scratch), property_cache=Path(scratch) / "properties")
        data = audit_data(args.image_dir, settings, bottlenecks=bottleneck_source(settings.module))
        images = data.readable()
        neighbours = data.bottleneck_neighbours(NEIGHBOURS + 2)
        print(f"{args.image_dir}: {len(images)} photos", flush=True)
        for margin in args.margins:
            chosen = settings.replace(near_duplicate_margin=margin)
            candidates = candidate_pairs(images, neighbours, chosen)
            matcher = PictureMatcher(
                args.image_dir,
                min_inliers=chosen.near_duplicate_inliers,
                min_detail_correlation=chosen.near_duplicate_detail,
            )
            started = time.perf_counter()
            pairs, _ = verify_pairs(images, candidates, matcher, chosen)
            seconds = time.perf_counter() - started
            kinds = [pair["kind"] for pair in pairs]
            print(
                f"margin {margin:.2f}: {len(candidates):5d} candidates, {seconds:6.1f} s, "
                f"{1000 * seconds / max(len(candidates), 1):5.1f} ms a pair; one picture {kinds.count(ONE_PICTURE)}, "
                f"one scene {kinds.count(ONE_SCENE)}",
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
