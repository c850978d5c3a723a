"""Seconds of pairing and grouping by hash (``candidate_pairs``, ``group_pairs``) on N images of one perceptual hash and
on N distinct ones (the geometric match of the pairs is not timed: these images are synthetic).

    python benchmarks/duplicate_groups.py [--images 8000]

One hash shared by thousands of images (blank frames, copies of one placeholder) was quadratic: every pair of them
went through the union-find loop. Distinct random hashes are the usual case and show the cost of the distance matrix.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from datacheck.checks.duplicates import candidate_pairs, group_pairs
from datacheck.settings import AuditSettings


def timed(hashes: list[str]) -> tuple[float, int]:
    images = pd.DataFrame({"path": [f"{i}.jpg" for i in range(len(hashes))], "phash": hashes})
    started = time.perf_counter()
    paths = images["path"].to_numpy()
    pairs = [
        {"paths": [paths[i], paths[j]]} for i, j in candidate_pairs(images, None, AuditSettings(near_duplicate_bits=4))
    ]
    groups = group_pairs(images, pairs)
    return time.perf_counter() - started, len(groups)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=8000)
    count = parser.parse_args().images
    rng = np.random.default_rng(0)
    same, same_groups = timed(["ffd8e0c0c0c0e0ff"] * count)
    distinct, distinct_groups = timed([f"{value:016x}" for value in rng.integers(0, 2**63, count)])
    print(f"{count} images of one hash:     {same:7.2f} s, {same_groups} group(s)")
    print(f"{count} images, distinct hashes: {distinct:7.2f} s, {distinct_groups} group(s)")


if __name__ == "__main__":
    main()
