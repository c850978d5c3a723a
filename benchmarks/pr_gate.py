"""The pull-request gate's cost: main's cold audit and run, then a pull request of new photos judged against them.

    python benchmarks/pr_gate.py [IMAGE_DIR] [--added 40] [--verify] [--tree ../old-tree ...]

Main is IMAGE_DIR (default flowers-dev) less ``--added / 2`` photos held back; the pull request adds those back (new
photos) and as many edited copies of others (a centre crop, mirrored and re-encoded: new content), as a contributor's
would. Each command runs as CI runs it, a process each, with caches of its own (never /tmp/bottleneck), warm for the
pull request as a CI cache makes them: ``check`` then ``train`` on main (cold), then ``check --baseline``, ``train
--baseline`` and ``report --audit`` on the pull request (warm). Prints each stage's seconds (the audit's own stages and
training's, from their JSON) and the warm gate's ratio to main's cold check + train, measured in the same run.

``--tree`` runs the same scenario with each tree's code (its own caches each), so that a change's effect is measured
in one run on one machine; the default is this tree alone.

``--verify`` also audits and trains the pull request's tree cold, with empty caches, and asserts that the warm gate
found the same findings (by fingerprint) and the same test accuracy, within 0.5 points.
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
SEED = "0"


TREE = Path(__file__).resolve().parents[1]


def timed(tree: Path, work: Path, *args: str | Path) -> float:
    """Seconds one ``retrain-ci`` command of ``tree`` takes as a process (its import included); its exit code is not a
    failure here, a gate's verdict is not this benchmark's business, but a usage error (2) is."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "retrain", *map(str, args)]
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    # From the scratch folder, not a checkout (nor /tmp, where the default /tmp/bottleneck would pass for pandas'
    # optional `bottleneck` package): ``python -m`` puts the working folder on sys.path before PYTHONPATH.
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=work)
    if completed.returncode not in (0, 1):
        sys.exit(f"retrain-ci {' '.join(map(str, args))} exited {completed.returncode}:\n{completed.stderr}")
    return time.perf_counter() - started


def split_off(image_dir: Path, main: Path, held_back: int) -> list[Path]:
    """Copy ``image_dir`` to ``main`` less ``held_back`` photos spread over it; returns those photos."""
    photos = sorted(image_dir.rglob("*.jpg"))
    kept_back = set(photos[:: max(1, len(photos) // held_back)][:held_back])
    for photo in photos:
        if photo not in kept_back:
            target = main / photo.relative_to(image_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(photo, target)
    return sorted(kept_back)


def pull_request(main: Path, pr: Path, image_dir: Path, new: list[Path], edited: int) -> None:
    """``pr``: main's photos, the ``new`` ones back in their class, and ``edited`` copies of others."""
    shutil.copytree(main, pr)
    for photo in new:
        shutil.copy(photo, pr / photo.relative_to(image_dir))
    originals = sorted(main.rglob("*.jpg"))
    for photo in originals[7 :: max(1, len(originals) // edited)][:edited]:
        with Image.open(photo) as image:
            width, height = image.size
            crop = image.crop((width // 8, height // 8, width - width // 8, height - height // 8))
            target = pr / photo.relative_to(main)
            crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(target.with_name(f"edited-{photo.name}"), quality=85)


def audit_and_run(
    code: Path, photos: Path, work: Path, name: str, baseline: dict[str, Path] | None
) -> dict[str, float]:
    """``check`` then ``train`` (then ``report --audit`` with a baseline) on ``photos`` by the code of ``code``; the
    stages' seconds."""
    caches = ["--bottleneck-dir", work / "bottlenecks"]
    audit, run = work / f"{name}-audit.json", work / f"{name}-run"
    against = ["--baseline", baseline["audit"]] if baseline else []
    stages = {"check": timed(code, work, "check", photos, *caches, *against, "--format", "json", "--output", audit)}
    against = ["--baseline", baseline["run"]] if baseline else []
    stages["train"] = timed(code, work, "train", photos, *caches, *against, "--output-dir", run, "--random-seed", SEED)
    if baseline:
        stages["report --audit"] = timed(code, work, "report", run, "--audit", audit)
    return stages


def detail(work: Path, name: str) -> dict[str, float]:
    """The audit's stages and training's, as their JSON records them."""
    summary = json.loads((work / f"{name}-audit.json").read_text())["summary"]
    metrics = json.loads((work / f"{name}-run" / "report" / "metrics.json").read_text())
    audit = {f"  check: {stage}": seconds for stage, seconds in summary.get("stage_seconds", {}).items()}
    training = {f"  train: {stage}": seconds for stage, seconds in metrics["durations_seconds"].items()}
    return {**dict(sorted(audit.items(), key=lambda item: -item[1])[:8]), **training}


def outcome(work: Path, name: str) -> tuple[set[str], float]:
    findings = json.loads((work / f"{name}-audit.json").read_text())["findings"]
    metrics = json.loads((work / f"{name}-run" / "report" / "metrics.json").read_text())
    return {finding["fingerprint"] for finding in findings}, metrics["test_accuracy"]


def scenario(code: Path, image_dir: Path, added: int, verify: bool) -> None:
    """Main's cold audit and run, then the pull request's warm gate, by the code of ``code``; prints the table."""
    with tempfile.TemporaryDirectory(prefix="pr-gate-") as scratch:
        work = Path(scratch)
        main_tree, pr_tree = work / "main" / "photos", work / "pr" / "photos"
        main_tree.mkdir(parents=True)
        new = split_off(image_dir, main_tree, added // 2)
        pull_request(main_tree, pr_tree, image_dir, new, added - len(new))
        cold = audit_and_run(code, main_tree, work, "main", None)
        cold_detail = detail(work, "main")
        baseline = {"audit": work / "main-audit.json", "run": work / "main-run"}
        warm = audit_and_run(code, pr_tree, work, "pr", baseline)
        warm_detail = detail(work, "pr")
        photos = sum(1 for _ in pr_tree.rglob("*.jpg"))
        print(f"\n{code}: {image_dir.name}, main {photos - added} photos, the pull request adds {added}; "
              f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
        print(f"{'stage':<34}{'main, cold':>12}{'PR, warm':>12}")
        for stage in [*warm, *dict.fromkeys([*cold_detail, *warm_detail])]:
            main_seconds = cold.get(stage, cold_detail.get(stage))
            pr_seconds = warm.get(stage, warm_detail.get(stage))
            shown = [f"{s:>11.1f}s" if s is not None else f"{'-':>12}" for s in (main_seconds, pr_seconds)]
            print(f"{stage:<34}{''.join(shown)}")
        gate, main_total = sum(warm.values()), cold["check"] + cold["train"]
        print(f"warm gate {gate:.1f} s; main's cold check + train {main_total:.1f} s; ratio {gate / main_total:.2f}x")
        if verify:
            cold_pr = work / "cold-pr"
            cold_pr.mkdir()
            audit_and_run(code, pr_tree, cold_pr, "pr", None)
            (warm_findings, warm_accuracy), (cold_findings, cold_accuracy) = outcome(work, "pr"), outcome(cold_pr, "pr")
            assert warm_findings == cold_findings, f"findings differ: {sorted(warm_findings ^ cold_findings)}"
            assert abs(warm_accuracy - cold_accuracy) <= 0.005, (warm_accuracy, cold_accuracy)
            print(f"verified: {len(warm_findings)} findings alike, accuracy {warm_accuracy:.1%} warm, "
                  f"{cold_accuracy:.1%} cold")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image_dir", nargs="?", type=Path, default=DATA / "flowers-dev")
    parser.add_argument("--added", type=int, default=40, help="photos the pull request adds (half new, half edited)")
    parser.add_argument("--verify", action="store_true", help="also run the pull request cold and compare")
    parser.add_argument("--tree", type=Path, action="append", help="a retrain-ci checkout to time (repeatable)")
    args = parser.parse_args()
    for code in args.tree or [TREE]:
        scenario(code.resolve(), args.image_dir, args.added, args.verify)


if __name__ == "__main__":
    main()
