"""The audit's precision and recall against findings judged by eye (benchmarks/labels/*.csv).

    python benchmarks/precision.py [--data ../shared/data/flowers-dev ../shared/data/flowers-sample] [--old-tree DIR]

Runs the default `retrain-ci check --format json` of each dataset with this tree (and with ``--old-tree``'s code, e.g.
a worktree of an earlier commit, for a before/after table in the same run), each in its own process with the
benchmark's own caches. Per check it prints flagged / right / wrong / unjudged / missed: a finding is right when the
labels say it is what its message says, wrong when they say otherwise, unjudged when no label covers it (judge it and
add a line), and missed counts the labelled defects of that dataset that no finding names.

What the labels say, per check:
- pairs.csv (`path_a,path_b,verdict,note`; verdict `one_picture`, `one_scene` or `different`): a `near_duplicates`
  pair is right when one picture; a `split_leakage` pair when one picture or one scene (it leaks either way);
- mislabels.csv (`path,given,verdict,note`; `mislabelled`, `ambiguous` or `correct`): `suspected_mislabel`, with
  ambiguous ones counted apart, neither right nor wrong;
- outliers.csv and overexposed.csv (`path,verdict,note`; `outlier` / `overexposed` or `fine`).
Paths are relative to the dataset folder; flowers-sample is a subset of flowers-dev with the same paths, so one label
serves both. The labels are every finding the default audit made on these datasets before and after issue 26, plus
the candidates near each threshold; a finding's label was decided by eye on the photos, before the rule was tuned.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
LABELS = HERE / "labels"
TREE = HERE.parent
SHARED = TREE.parent / "shared" / "data"
RIGHT = {
    "near_duplicates": {"one_picture"},
    "split_leakage": {"one_picture", "one_scene"},
    "suspected_mislabel": {"mislabelled"},
    "outlier": {"outlier"},
    "overexposed": {"overexposed"},
}
NEITHER = {"ambiguous"}  # suspected_mislabel: two classes or too small to tell; counted apart


def read_labels() -> tuple[dict[tuple[str, str], str], dict[str, dict[str, str]]]:
    """Pair verdicts by sorted path pair, and per-photo verdicts by check."""
    pairs = {}
    with open(LABELS / "pairs.csv", newline="") as file:
        for row in csv.DictReader(file):
            pairs[tuple(sorted((row["path_a"], row["path_b"])))] = row["verdict"]
    photos: dict[str, dict[str, str]] = {}
    for check, name in (("suspected_mislabel", "mislabels"), ("outlier", "outliers"), ("overexposed", "overexposed")):
        path = LABELS / f"{name}.csv"
        if path.exists():
            with open(path, newline="") as file:
                photos[check] = {row["path"]: row["verdict"] for row in csv.DictReader(file)}
    return pairs, photos


def audit(tree: Path, dataset: Path, caches: Path) -> tuple[dict, float]:
    """The default audit of ``dataset`` by ``tree``'s code, as JSON, and the command's wall seconds."""
    output = caches / f"{tree.name}-{dataset.name}.json"
    command = [
        sys.executable,
        "-c",
        "from retrain.cli import app; app()",
        "check",
        str(dataset),
        "--format",
        "json",
        "--output",
        str(output),
        "--fail-on",
        "never",
        "--bottleneck-dir",
        str(caches / "bottlenecks"),
        "--property-cache",
        str(caches / f"properties-{tree.name}"),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(tree)}, cwd=caches, capture_output=True)
    return json.loads(output.read_text()), time.perf_counter() - started


def scored(report: dict, pairs: dict[tuple[str, str], str], photos: dict[str, dict[str, str]]) -> dict[str, list]:
    """Per check: flagged, right, wrong, ambiguous, unjudged, missed, and the unjudged items themselves."""
    present = {entry["path"] for entry in report["manifest"]}
    split = {entry["path"]: entry["split"] for entry in report["manifest"]}
    table = {}
    for check, right in RIGHT.items():
        counts = defaultdict(int)
        unjudged, flagged_items = [], set()
        for finding in (f for f in report["findings"] if f["check"] == check):
            items = (
                [tuple(sorted(pair["paths"])) for pair in finding["details"].get("pairs", [])]
                if check in ("near_duplicates", "split_leakage")
                else [finding["paths"][0]]
            )
            for item in items:
                flagged_items.add(item)
                verdict = pairs.get(item) if isinstance(item, tuple) else photos.get(check, {}).get(item)
                counts["flagged"] += 1
                key = "unjudged" if verdict is None else "right" if verdict in right else "neither"
                key = key if verdict not in NEITHER else "ambiguous"
                counts["wrong" if key == "neither" else key] += 1
                if verdict is None:
                    unjudged.append(item)
        labelled = pairs if check in ("near_duplicates", "split_leakage") else photos.get(check, {})
        defects = [
            item
            for item, verdict in labelled.items()
            if verdict in right
            and all(path in present for path in (item if isinstance(item, tuple) else (item,)))
            and (check != "split_leakage" or split[item[0]] != split[item[1]])
        ]
        counts["missed"] = sum(item not in flagged_items for item in defects)
        table[check] = [counts, unjudged]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", default=[SHARED / "flowers-dev", SHARED / "flowers-sample"])
    parser.add_argument("--old-tree", type=Path, help="an earlier commit's work tree, audited in the same run")
    args = parser.parse_args()
    pairs, photos = read_labels()
    trees = ([args.old_tree.resolve()] if args.old_tree else []) + [TREE]
    with tempfile.TemporaryDirectory() as scratch:
        caches = Path(scratch)
        for dataset in args.data:
            for tree in trees:
                audit(tree, dataset, caches)  # warms the caches: the timed run compares the checks
                report, seconds = audit(tree, dataset, caches)
                name = "this tree" if tree == TREE else f"{tree.name}"
                print(f"\n{dataset.name}, {name}: audit {report['summary']['seconds']:.1f} s, command {seconds:.1f} s")
                print(f"  {'check':20s} flagged  right  wrong  ambiguous  unjudged  missed  precision")
                for check, (counts, unjudged) in scored(report, pairs, photos).items():
                    judged = counts["right"] + counts["wrong"]
                    precision = f"{counts['right'] / judged:.0%}" if judged else "-"
                    print(
                        f"  {check:20s} {counts['flagged']:7d} {counts['right']:6d} {counts['wrong']:6d} "
                        f"{counts['ambiguous']:10d} {counts['unjudged']:9d} {counts['missed']:7d}  {precision:>9s}"
                    )
                    for item in unjudged:
                        print(f"      unjudged: {item}")


if __name__ == "__main__":
    main()
