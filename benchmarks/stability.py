"""How many untouched photos change status in the model-based checks when a pull request adds photos (issue 27).

    python benchmarks/stability.py [IMAGE_DIR] [--added 10 100] [--old-tree DIR] [--seed 0] [--options ...]

Holds back the largest ``--added`` count of IMAGE_DIR's photos (a seeded draw), audits the rest as the main branch,
then the main branch plus the first N held-back photos, for each N. For `suspected_mislabel` and `outlier` it prints
how many photos the change did not touch entered or left the findings, and how many of the main branch's top 10
suspects (by rank) left them. Each tree (this one, and ``--old-tree``'s code, e.g. a worktree of an earlier commit)
runs the same audits in its own process with the benchmark's own caches. Datasets are hard links (copies across
file systems): the audit skips symbolic links that leave the dataset folder. ``--options`` go to this tree's audits
(e.g. ``--options=--suspects=all`` to count every suspect, not only the likely ones the default reports).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

TREE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TREE / "tests"))
from defects import linked_or_copied  # noqa: E402

DEFAULT_DATA = TREE.parent / "shared" / "data" / "flowers-dev"
MODEL_BASED = ("suspected_mislabel", "outlier")
TOP = 10


def linked(photos: list[Path], source: Path, root: Path) -> Path:
    for photo in photos:
        linked_or_copied(photo, root / photo.relative_to(source))
    return root


def audit(tree: Path, dataset: Path, caches: Path, options: list[str]) -> dict:
    output = caches / f"{tree.name}-{dataset.name}.json"
    command = [
        sys.executable, "-c", "from retrain.cli import app; app()", "check", str(dataset), "--format", "json",
        "--output", str(output), "--fail-on", "never", "--only", ",".join(MODEL_BASED),
        "--bottleneck-dir", str(caches / "bottlenecks"), "--property-cache", str(caches / f"properties-{tree.name}"),
        *options,
    ]  # fmt: skip
    run = subprocess.run(
        command, env={**os.environ, "PYTHONPATH": str(tree)}, cwd=caches, capture_output=True, text=True
    )
    if run.returncode != 0:
        sys.exit(f"the audit by {tree} failed:\n{run.stderr[-2000:]}")
    return json.loads(output.read_text())


def flagged(report: dict, check: str) -> dict[str, int]:
    """Flagged photo -> its rank (suspected_mislabel's own, else the finding's order)."""
    found = [f for f in report["findings"] if f["check"] == check]
    return {f["paths"][0]: f["details"].get("rank", index + 1) for index, f in enumerate(found)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("image_dir", type=Path, nargs="?", default=DEFAULT_DATA)
    parser.add_argument("--added", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--old-tree", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--options", nargs="*", default=[], help="more options for this tree's audits")
    args = parser.parse_args()
    photos = sorted(p for p in args.image_dir.rglob("*") if p.is_file())
    held = random.Random(args.seed).sample(photos, max(args.added))
    kept = [photo for photo in photos if photo not in set(held)]
    trees = ([args.old_tree.resolve()] if args.old_tree else []) + [TREE]
    with tempfile.TemporaryDirectory() as scratch:
        caches = Path(scratch)
        main_branch = linked(kept, args.image_dir, caches / "main")
        heads = {n: linked(kept + held[:n], args.image_dir, caches / f"plus{n}") for n in args.added}
        for tree in trees:
            name = f"this tree {' '.join(args.options)}".strip() if tree == TREE else tree.name
            options = args.options if tree == TREE else []
            before = audit(tree, main_branch, caches, options)
            for n, head in heads.items():
                after = audit(tree, head, caches, options)
                touched = {p.relative_to(args.image_dir).as_posix() for p in held[:n]}
                for check in MODEL_BASED:
                    old, new = flagged(before, check), flagged(after, check)
                    entered = sorted(set(new) - set(old) - touched)
                    left = sorted(set(old) - set(new))
                    top_left = [path for path in left if old[path] <= TOP]
                    print(
                        f"{name:12s} +{n:<4d} {check:20s} main {len(old):3d}, head {len(new):3d}: untouched photos "
                        f"entering {len(entered):3d}, leaving {len(left):3d} ({len(top_left)} of the main's top {TOP})",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
