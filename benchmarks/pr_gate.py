"""The pull-request gate's cost: main's cold audit and run, then a pull request of new photos judged against them.

    python benchmarks/pr_gate.py [IMAGE_DIR] [--added 40] [--repeat 3] [--verify] [--tree ../old-tree ...]
    python benchmarks/pr_gate.py --photos 10000 30000 100000 --added 40 400 4000 [--scratch DIR] [--verify]

Main is IMAGE_DIR (default flowers-dev) less ``--added / 2`` photos held back; the pull request adds those back (new
photos) and as many edited copies of others (a centre crop, mirrored and re-encoded: new content), as a contributor's
would. Each tree is a git work tree with its files committed, as a CI checkout is (unchanged photos are keyed by their
blob ids, not read). Each command runs as CI runs it, a process each, with caches of its own (never /tmp/bottleneck),
warm for the pull request as a CI cache makes them: ``retrain-ci gate`` on main (cold), then ``gate --baseline`` on
the pull request (warm, against main's audit.json and report/), as the Action runs them. A tree from before ``gate``
runs ``check`` then ``train --audit``, and one from before ``train --audit`` also ``report --audit``, as their Actions
did. Prints each stage's seconds (the audit's own stages and training's, from their JSON) and the warm gate's ratio to
main's cold gate (check + train), measured in the same run.

``--tree`` runs the same scenario with each tree's code (its own caches each), so that a change's effect is measured
in one run on one machine; the default is this tree alone.

``--repeat N`` runs the warm gate N times, each on a fresh copy of main's caches, and prints the median's stages
and every run's seconds: on a shared machine one run's wall time moves by a second either way.

``--verify`` also audits and trains the pull request's tree cold, with empty caches, and asserts that the warm gate
found the same findings (by fingerprint) and the same test accuracy, within 0.5 points.

``--photos`` (scale mode) measures how the warm gate grows with the dataset and with the change: main is each size of
distinct small photos (at most 160x120) built once from IMAGE_DIR (seeded crops, re-encoded; smaller sizes are hard
links to a prefix of the largest), and the pull requests add ``--added`` photos, half new, half edited copies of
main's (mirrored crops). The smallest pull request runs at every size, each of them at the largest; each on a copy of
main's caches as main's ``check`` and ``train`` left them. Bottlenecks are synthetic (each photo's source's real one,
perturbed, as in audit_scale.py) and put in the caches beforehand, for main's photos and the added ones alike: real
ones take about 14 ms of CPU a photo (25 minutes at 100,000 on 2 cores), which would swamp main's cold figures, and
the added photos' share is the same at any dataset size, so it is printed apart (``--added`` x 14 ms) rather than
measured. Prints a stage table a size, then the growth table. ``--verify`` there runs the largest pull request cold
(empty caches but the synthetic bottlenecks) and prints how many findings agree and both accuracies.
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
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from audit_scale import seeded_crop, synthetic_vectors
from PIL import Image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SEED = "0"
# CPU seconds of one photo's bottleneck on this machine's class of CPU (benchmarks/bottlenecks.py): what a pull
# request's added photos cost on top of the scale mode's figures, which never compute one.
BOTTLENECK_CPU = 0.014


TREE = Path(__file__).resolve().parents[1]


def timed(tree: Path, work: Path, *args: str | Path) -> float:
    """Seconds one ``retrain-ci`` command of ``tree`` takes as a process (its import included); its exit code is not a
    failure here, a gate's verdict is not this benchmark's business, but a usage error (2) is."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "retrain", *map(str, args)]
    # Bytecode written and read, as an installed retrain-ci's is (pip compiles it): without it (PYTHONDONTWRITEBYTECODE,
    # as some machines set) every command would compile retrain-ci's modules again, about 0.2 s.
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    environment["PYTHONPATH"] = str(tree)
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


def committed(tree: Path) -> Path:
    """``tree`` as a git work tree with every file committed, as CI checks a dataset out: the gate keys unchanged photos
    by their blob ids (the cache's blob map) rather than reading them. Returns ``tree``."""
    identity = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost"}
    environment = {**os.environ, **identity, "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "dataset"]):
        subprocess.run(["git", "-c", "gc.auto=0", *command], cwd=tree, env=environment, check=True)  # no repack after
    return tree


def audit_and_run(
    code: Path, photos: Path, work: Path, name: str, baseline: dict[str, Path] | None
) -> dict[str, float]:
    """The gate on ``photos`` by the code of ``code``, as that tree's Action runs it; the commands' seconds. A tree
    with ``retrain-ci gate`` audits and trains in that one process; an older one runs ``check`` then ``train``, and one
    whose ``train`` takes no ``--audit`` exports its models and renders the report again with ``report --audit``. The
    audit ends up in ``work/NAME-audit.json`` and the run in ``work/NAME-run``, whichever ran them."""
    caches = ["--bottleneck-dir", work / "bottlenecks"]
    audit, run = work / f"{name}-audit.json", work / f"{name}-run"
    if (code / "retrain" / "cli" / "gate.py").is_file():
        kept = []
        if baseline:  # main's outputs as the Action keeps them: audit.json and report/
            kept = ["--baseline", work / "baseline"]
            (work / "baseline").mkdir(exist_ok=True)
            shutil.copy(baseline["audit"], work / "baseline" / "audit.json")
            shutil.copytree(baseline["run"] / "report", work / "baseline" / "report", dirs_exist_ok=True)
        gate = ["gate", photos, *caches, *kept, "--output-dir", run, "--random-seed", SEED]
        stages = {"gate": timed(code, work, *gate)}
        shutil.copy(run / "audit" / "audit.json", audit)
        return stages
    against = ["--baseline", baseline["audit"]] if baseline else []
    stages = {"check": timed(code, work, "check", photos, *caches, *against, "--format", "json", "--output", audit)}
    one_step = '"--audit"' in (code / "retrain" / "cli" / "train.py").read_text()
    against = ["--baseline", baseline["run"]] if baseline else []
    gate = (["--audit", audit] if baseline else []) + ["--export", "none"] if one_step else []
    train = ["train", photos, *caches, *against, *gate, "--output-dir", run, "--random-seed", SEED]
    stages["train"] = timed(code, work, *train)
    if baseline and not one_step:
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


def stage_table(columns: dict[str, tuple[dict[str, float], dict[str, float]]]) -> None:
    """One row per command, then per audit and training stage; one column per run (its commands, its detail)."""
    commands = dict.fromkeys(stage for stages, _ in columns.values() for stage in stages)
    stages = dict.fromkeys(stage for _, details in columns.values() for stage in details)
    print(f"{'stage':<34}" + "".join(f"{name:>14}" for name in columns))
    for stage in [*commands, *stages]:
        shown = [{**run, **details}.get(stage) for run, details in columns.values()]
        print(f"{stage:<34}" + "".join(f"{s:>13.1f}s" if s is not None else f"{'-':>14}" for s in shown))


def scenario(code: Path, image_dir: Path, added: int, verify: bool, repeat: int) -> None:
    """Main's cold audit and run, then the pull request's warm gate ``repeat`` times, each on a copy of main's caches
    as CI restores them, by the code of ``code``; prints the table of the median warm gate."""
    with tempfile.TemporaryDirectory(prefix="pr-gate-") as scratch:
        work = Path(scratch)
        main_tree, pr_tree = work / "main" / "photos", work / "pr" / "photos"
        main_tree.mkdir(parents=True)
        new = split_off(image_dir, main_tree, added // 2)
        pull_request(main_tree, pr_tree, image_dir, new, added - len(new))
        committed(main_tree), committed(pr_tree)
        cold = audit_and_run(code, main_tree, work, "main", None)
        cold_detail = detail(work, "main")
        baseline = {"audit": work / "main-audit.json", "run": work / "main-run"}
        shutil.copytree(work / "bottlenecks", work / "main-caches")
        runs = []
        for _ in range(repeat):
            shutil.rmtree(work / "bottlenecks")
            shutil.copytree(work / "main-caches", work / "bottlenecks")
            warm = audit_and_run(code, pr_tree, work, "pr", baseline)
            runs.append((sum(warm.values()), warm, detail(work, "pr")))
        gate, warm, warm_detail = sorted(runs, key=lambda run: run[0])[len(runs) // 2]
        photos = sum(1 for _ in pr_tree.rglob("*.jpg"))
        print(f"\n{code}: {image_dir.name}, main {photos - added} photos, the pull request adds {added}; "
              f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
        stage_table({"main, cold": (cold, cold_detail), "PR, warm": (warm, warm_detail)})
        main_total = sum(cold.values())
        spread = f" (median of {repeat}: {', '.join(f'{run[0]:.1f}' for run in runs)} s)" if repeat > 1 else ""
        print(
            f"warm gate {gate:.1f} s{spread}; main's cold gate {main_total:.1f} s; ratio {gate / main_total:.2f}x"
            + (f" ({min(runs)[0] / main_total:.2f}x to {max(runs)[0] / main_total:.2f}x)" if repeat > 1 else "")
        )
        if verify:
            cold_pr = work / "cold-pr"
            cold_pr.mkdir()
            audit_and_run(code, pr_tree, cold_pr, "pr", None)
            (warm_findings, warm_accuracy), (cold_findings, cold_accuracy) = outcome(work, "pr"), outcome(cold_pr, "pr")
            assert warm_findings == cold_findings, f"findings differ: {sorted(warm_findings ^ cold_findings)}"
            assert abs(warm_accuracy - cold_accuracy) <= 0.005, (warm_accuracy, cold_accuracy)
            print(f"verified: {len(warm_findings)} findings alike, accuracy {warm_accuracy:.1%} warm, "
                  f"{cold_accuracy:.1%} cold")  # fmt: skip


def small_variant(job: tuple[Path, Path, int, bool]) -> None:
    """One distinct small photo (at most 160x120): a seeded crop of 70-95% of each side of ``source``, re-encoded at
    quality 70-95; ``edited`` also mirrors it, as a contributor's edited copy."""
    source, target, seed, edited = job
    rng = np.random.default_rng(seed)
    crop = seeded_crop(source, rng)
    crop.thumbnail((160, 120))
    if edited:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    crop.save(target, quality=int(rng.integers(70, 96)))


def build_pool(image_dir: Path, pool: Path, photos: int, added: int, smallest: int) -> list[dict]:
    """``photos`` distinct photos for main and ``added`` for the pull requests under ``pool``, by class, built once and
    listed in ``pool/manifest.json``: each with its kind (main, new, edited), its flowers-dev source (its index in
    sorted order) and, for an edited copy, the main photo it copies. Every size's main is a prefix of the main photos
    and every pull request a prefix of the added ones (alternately new and edited, the edited ones copies of photos
    among the first ``smallest``, which every size's main holds), so all sizes share one build. The sources are taken
    with a prime stride, so that any prefix spreads over every class."""
    wanted = {"image_dir": str(image_dir), "photos": photos, "added": added, "smallest": smallest}
    manifest_path = pool / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        same_source = manifest["image_dir"] == str(image_dir) and manifest["smallest"] <= smallest
        if same_source and manifest["photos"] >= photos and manifest["added"] >= added:  # a larger build serves
            return manifest["entries"]
    shutil.rmtree(pool, ignore_errors=True)
    sources = sorted(image_dir.rglob("*.jpg"))
    entries, jobs = [], []
    for index in range(photos + added):
        kind = "main" if index < photos else ("new" if (index - photos) % 2 == 0 else "edited")
        copy_of = (index - photos) * 7919 % smallest if kind == "edited" else None
        source = entries[copy_of]["source"] if copy_of is not None else index * 7919 % len(sources)
        target = pool / kind / sources[source].parent.name / f"{kind}-{sources[source].stem}-{index}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        origin = pool / entries[copy_of]["path"] if copy_of is not None else sources[source]
        jobs.append((origin, target, index, kind == "edited"))
        entries.append({"path": str(target.relative_to(pool)), "kind": kind, "source": source, "copy_of": copy_of})
    with ProcessPoolExecutor(2) as workers:  # the edited copies after the photos they copy
        list(workers.map(small_variant, [job for job in jobs if not job[3]], chunksize=256))
        list(workers.map(small_variant, [job for job in jobs if job[3]], chunksize=256))
    manifest_path.write_text(json.dumps({**wanted, "entries": entries}))
    return entries


def scale_rows(entries: list[dict], photos: int, added: int) -> list[int]:
    """The pool's rows of a dataset: the first ``photos`` main photos and the first ``added`` added ones."""
    main_rows = [row for row, entry in enumerate(entries) if entry["kind"] == "main"]
    added_rows = [row for row, entry in enumerate(entries) if entry["kind"] != "main"]
    return main_rows[:photos] + added_rows[:added]


def fill_bottlenecks(pool: Path, photos: int, added: int, bottleneck_dir: Path, real_cache: Path, image_dir: Path):
    """In a child process, by the measured tree's code: its bottleneck caches (plain and mirrored, which ``train``
    needs too) for main's ``photos`` and the pull requests' ``added``, filled with synthetic vectors. Each photo's is
    its flowers-dev source's real bottleneck (``real_cache``, which a ``check`` of IMAGE_DIR filled) perturbed as in
    audit_scale.py, an edited copy's the photo it copies' perturbed less, a mirrored one the photo's perturbed a
    little; seeded, so every size and every run gets the same vectors."""
    from retrain.core.bottleneck_cache import BottleneckCache
    from retrain.core.shard_store import content_key
    from retrain.training.modules.bundled import BUNDLED_BACKBONES

    backbone = BUNDLED_BACKBONES["efficientnet_lite0"]
    entries = json.loads((pool / "manifest.json").read_text())["entries"]
    sources = [content_key(path) for path in sorted(image_dir.rglob("*.jpg"))]
    unique = list(dict.fromkeys(sources))
    real = np.empty((len(unique), backbone.feature_size), np.float32)
    if not BottleneckCache(real_cache, backbone.cache_key(False)).read(unique, real).found.all():
        sys.exit(f"{real_cache} lacks some of {image_dir}'s bottlenecks")
    real = real[[unique.index(key) for key in sources]]
    vectors = synthetic_vectors(real, np.array([entry["source"] for entry in entries]))
    rng = np.random.default_rng(1)
    edited = np.array([row for row, entry in enumerate(entries) if entry["copy_of"] is not None], dtype=np.int64)
    if len(edited):
        copied = np.array([entries[row]["copy_of"] for row in edited])
        vectors[edited] = vectors[copied] * np.exp(0.3 * rng.standard_normal((len(edited), real.shape[1]), np.float32))
    rows = scale_rows(entries, photos, added)
    keys = [content_key(pool / entries[row]["path"]) for row in rows]
    plain = BottleneckCache(bottleneck_dir, backbone.cache_key(False))
    mirrored = BottleneckCache(bottleneck_dir, backbone.cache_key(False) + "-mirrored")
    for start in range(0, len(rows), 20_000):  # large shards, as a filled cache's compacted ones are
        chunk = vectors[rows[start : start + 20_000]]
        plain.add(keys[start : start + 20_000], chunk)
        mirrored.add(keys[start : start + 20_000], chunk * np.exp(0.1 * rng.standard_normal(chunk.shape, np.float32)))


def filled(code: Path, pool: Path, photos: int, added: int, work: Path, real_cache: Path, image_dir: Path) -> Path:
    """``work/bottlenecks``, filled by ``fill_bottlenecks`` with ``code``'s cache format; returns ``work``."""
    command = [__file__, "--fill", pool, photos, added, work / "bottlenecks", real_cache, image_dir]
    environment = {**os.environ, "PYTHONPATH": str(code)}
    work.mkdir(parents=True)
    subprocess.run([sys.executable, *map(str, command)], env=environment, cwd=work, check=True)
    return work


def linked(pool: Path, entries: list[dict], rows: list[int], photos: Path) -> Path:
    """``photos``: hard links to the pool's ``rows`` by class, a dataset of its own at no cost in disk or time."""
    for row in rows:
        target = photos / Path(entries[row]["path"]).relative_to(entries[row]["kind"])
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(pool / entries[row]["path"], target)
    return photos


def scale_scenario(
    code: Path, image_dir: Path, sizes: list[int], added: list[int], verify: bool, scratch: Path
) -> list[tuple]:
    """For each size, main's cold audit and run, then its pull requests' warm gates, each on a copy of main's caches
    as CI restores them: the smallest pull request at every size, each of them at the largest. Prints a table a
    size; returns the growth table's rows."""
    started = time.perf_counter()
    pool = scratch / "pool"
    entries = build_pool(image_dir, pool, max(sizes), max(added), min(sizes))
    built = time.perf_counter() - started
    print(f"\n{code}: {len(entries)} photos built from {image_dir.name} in {pool} ({built:.0f} s, or found there)")
    runs = scratch / f"runs-{code.name}"
    shutil.rmtree(runs, ignore_errors=True)
    real_cache = scratch / f"{image_dir.name}-bottlenecks-{code.name}"  # real ones, kept with the pool
    runs.mkdir(parents=True)
    timed(code, runs, "check", image_dir, "--bottleneck-dir", real_cache, "--output", runs / "flowers-audit.txt")
    growth = []
    for size in sorted(sizes):
        work = filled(code, pool, size, max(added), runs / f"{size}", real_cache, image_dir)
        main_tree = committed(linked(pool, entries, scale_rows(entries, size, 0), work / "main" / "photos"))
        cold = audit_and_run(code, main_tree, work, "main", None)
        columns = {"main, cold": (cold, detail(work, "main"))}
        baseline = {"audit": work / "main-audit.json", "run": work / "main-run"}
        for count in added if size == max(sizes) else added[:1]:
            pr_work = work / f"pr-{count}"
            pr_tree = committed(linked(pool, entries, scale_rows(entries, size, count), pr_work / "photos"))
            shutil.copytree(work / "bottlenecks", pr_work / "bottlenecks")  # main's caches, as CI restores them
            warm = audit_and_run(code, pr_tree, pr_work, "pr", baseline)
            columns[f"+{count}, warm"] = (warm, detail(pr_work, "pr"))
            growth.append((size, count, warm, sum(cold.values()), os.getloadavg()[0]))
        print(f"\n{code}: main {size} photos built from {image_dir.name}, synthetic bottlenecks (none computed); "
              f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
        stage_table(columns)
        growth_table(growth[-len(columns) + 1 :])  # this size's rows now, in case a long run is cut short
        if verify and size == max(sizes):
            cold_pr = filled(code, pool, size, max(added), work / "cold-pr", real_cache, image_dir)
            audit_and_run(code, pr_work / "photos", cold_pr, "pr", None)
            (warm_found, warm_accuracy), (cold_found, cold_accuracy) = outcome(pr_work, "pr"), outcome(cold_pr, "pr")
            alike, warm_only, cold_only = warm_found & cold_found, warm_found - cold_found, cold_found - warm_found
            print(f"verify, +{max(added)} cold (its caches filled with the same synthetic bottlenecks): {len(alike)} "
                  f"findings alike, {len(warm_only)} warm only, {len(cold_only)} cold only; accuracy "
                  f"{warm_accuracy:.1%} warm, {cold_accuracy:.1%} cold")  # fmt: skip
        shutil.rmtree(work)
    return growth


def growth_table(growth: list[tuple]) -> None:
    """Warm gate seconds against the dataset's size and the change's (by command, for a tree that runs several), and
    what the added photos' bottlenecks (not computed here) would cost."""
    print(f"\n{'photos':>8}{'added':>7}{'check':>8}{'train':>8}{'report':>8}{'gate':>8}{'main cold':>11}{'ratio':>7}"
          f"{'load':>6}   bottlenecks of the added photos")  # fmt: skip
    for size, count, warm, main_total, load in growth:
        gate = sum(warm.values())
        parts = [f"{warm[command]:>7.1f}s" if command in warm else f"{'-':>8}" for command in ("check", "train")]
        parts.append(f"{warm.get('report --audit', 0.0):>7.1f}s" if "check" in warm else f"{'-':>8}")
        print(f"{size:>8}{count:>7}" + "".join(parts) + f"{gate:>7.1f}s{main_total:>10.1f}s"
              f"{gate / main_total:>6.2f}x{load:>6.1f}   + ~{count * BOTTLENECK_CPU:.1f} s CPU")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image_dir", nargs="?", type=Path, default=DATA / "flowers-dev")
    parser.add_argument("--added", type=int, nargs="+", default=[40], help="photos a pull request adds (half new)")
    parser.add_argument("--photos", type=int, nargs="+", help="scale mode: main's sizes, built from IMAGE_DIR")
    parser.add_argument("--scratch", type=Path, help="scale mode: where to build (kept and reused; default a temp dir)")
    parser.add_argument("--verify", action="store_true", help="also run the (largest) pull request cold and compare")
    parser.add_argument("--repeat", type=int, default=1, help="warm gates to run, each on main's caches (the median)")
    parser.add_argument("--tree", type=Path, action="append", help="a retrain-ci checkout to time (repeatable)")
    args = parser.parse_args()
    args.added.sort()
    sys.stdout.reconfigure(line_buffering=True)  # each table as it is measured, also into a file: runs take long
    if not args.photos:
        for code in args.tree or [TREE]:
            for added in args.added:
                scenario(code.resolve(), args.image_dir, added, args.verify, args.repeat)
        return
    with tempfile.TemporaryDirectory(prefix="pr-gate-scale-") as temporary:
        scratch = (args.scratch or Path(temporary)).resolve()
        for code in args.tree or [TREE]:
            growth = scale_scenario(code.resolve(), args.image_dir, args.photos, args.added, args.verify, scratch)
            print(f"\n{code}: the warm gate's growth (bottlenecks synthetic; the added photos' real cost apart)")
            growth_table(growth)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fill"]:
        pool, photos, added, bottleneck_dir, real_cache, image_dir = sys.argv[2:8]
        fill_bottlenecks(Path(pool), int(photos), int(added), Path(bottleneck_dir), Path(real_cache), Path(image_dir))
    else:
        main()
