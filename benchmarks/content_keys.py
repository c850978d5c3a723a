"""Seconds to find the content key of every file of a dataset: hashing it all (as every run did before the key map),
the first run with a map (hashing and learning), a warm run (stat signatures), and a fresh git clone with the map
restored (blob ids, as on CI); on IMAGE_DIR and on a built folder of ``--files`` small files. Then `check`'s
"dataset" stage (audit JSON ``stage_seconds``) on IMAGE_DIR with each ``--tree``'s code and this one's, warm, in place
and in a fresh clone with the caches restored.

    python benchmarks/content_keys.py [IMAGE_DIR] [--files 100000] [--tree ../old-tree]

The page cache is warm throughout (files just written or read), so hashing times are a lower bound for a cold disk.

Measured at 0ca7a23 on 2 shared cores. flowers-dev (load 3.6): hash all 0.32 s, first run with a map 0.83 s, warm
0.10 / 0.04 s, fresh clone from git 0.29 s then 0.03 s. 100,000 files of 1-4 kB (5 hard links of 20,000; load 4-6): hash
all 8.93 s, first run 10.78 s, warm 1.88 s, fresh clone from git 4.26 s, then 1.88 s. Files this small are the worst
case: hashing 100,000 photos (about 10 GB) costs far more, keying them from the map the same. `check`'s dataset stage
on flowers-dev, warm (load 6.2-6.4): in place 1.19 s (5586820) -> 0.56 s; first run in a fresh clone 1.22 -> 1.21 s:
there git's `diff-files` itself re-reads the files written in the same second as its index (racy git, 0.7 s; 0.00 s
after `git update-index --refresh`), which a checkout of a larger dataset leaves to its last second of files.
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

TREE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TREE))

from retrain.core import content_keys as keys_module  # noqa: E402
from retrain.core.content_keys import content_keys  # noqa: E402

GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
GIT_ENV = {name: value for name, value in os.environ.items() if not name.startswith("GIT_")}


def git(*args: str | Path, cwd: Path) -> None:
    subprocess.run([*GIT, *map(str, args)], cwd=cwd, check=True, capture_output=True, env=GIT_ENV)


def repository(source: Path, target: Path) -> Path:
    """A git repository holding a copy of ``source``, committed."""
    shutil.copytree(source, target)
    git("init", "-q", cwd=target)
    git("add", ".", cwd=target)
    git("commit", "-q", "-m", "dataset", cwd=target)
    return target


def files_of(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file() and ".git" not in path.relative_to(root).parts)


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def timed(label: str, paths: list[Path], cache: Path | None, truth: list[str] | None) -> list[str]:
    counted = []
    real = keys_module._digests
    keys_module._digests = lambda file, as_blob: (counted.append(1), real(file, as_blob))[1]
    try:
        started = time.perf_counter()
        keys = content_keys(paths, cache)
        seconds = time.perf_counter() - started
    finally:
        keys_module._digests = real
    assert truth is None or keys == truth, f"{label}: keys differ from SHA-1"
    print(f"  {label:<44} {seconds:7.2f} s  files read {len(counted):>7,}  ({load()})", flush=True)
    return keys


def key_times(name: str, source: Path, scratch: Path) -> None:
    started = time.perf_counter()
    repo = repository(source, scratch / f"{name}-repo")
    print(f"{name}: {len(files_of(repo)):,} files, repository built in {time.perf_counter() - started:.0f} s")
    time.sleep(keys_module.RACY_NS / 1e9)  # past the racy window, as any dataset but one just written
    cache = scratch / f"{name}-cache"
    paths = files_of(repo)
    truth = timed("hash every file (before: every run)", paths, None, None)
    timed("first run with a map (hash, learn)", paths, cache, truth)
    timed("warm: stat signatures", paths, cache, truth)
    timed("warm again", paths, cache, truth)
    clone = scratch / f"{name}-clone"
    git("clone", "-q", "--no-local", repo, clone, cwd=scratch)
    time.sleep(keys_module.RACY_NS / 1e9)
    timed("fresh clone, map restored: git blob ids", files_of(clone), cache, truth)
    timed("fresh clone, again: stat signatures", files_of(clone), cache, truth)
    print(f"  map: {sum(f.stat().st_size for f in (cache / 'content-keys').rglob('*.shard')) / 1e6:.1f} MB")


def build_folder(target: Path, count: int) -> Path:
    """``count`` files of 1-4 kB of random bytes (not photos: only keying is timed) in 10 class folders."""
    rng = __import__("random").Random(0)
    for index in range(count):
        folder = target / f"class{index % 10}"
        if index < 10:
            folder.mkdir(parents=True)
        (folder / f"{index:06d}.jpg").write_bytes(rng.randbytes(rng.randrange(1024, 4096)))
    return target


def dataset_stage(tree: Path, work: Path, dataset: Path, cache: Path) -> float:
    command = [
        sys.executable,
        "-m",
        "retrain",
        "check",
        str(dataset),
        "--format",
        "json",
        "--bottleneck-dir",
        str(cache),
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, cwd=work, env={**os.environ, "PYTHONPATH": str(tree)}
    )
    if completed.returncode not in (0, 1):
        sys.exit(f"check exited {completed.returncode}:\n{completed.stderr}")
    return json.loads(completed.stdout)["summary"]["stage_seconds"]["dataset"]


def check_times(source: Path, scratch: Path, trees: list[Path]) -> None:
    repo = repository(source, scratch / "check-repo")
    filled = scratch / "check-cache"
    dataset_stage(TREE, scratch, repo, filled)  # cold: bottlenecks, properties, keys
    print(f"check's dataset stage, warm, on {source.name} (seconds; best of 2):")
    for tree in [*trees, TREE]:
        cache = scratch / f"cache-{len(list(scratch.glob('cache-*')))}"
        shutil.copytree(filled, cache)
        in_place = min(dataset_stage(tree, scratch, repo, cache) for _ in range(2))
        clone = scratch / f"clone-{cache.name}"
        git("clone", "-q", "--no-local", repo, clone, cwd=scratch)
        time.sleep(keys_module.RACY_NS / 1e9)
        fresh = dataset_stage(tree, scratch, clone, cache)  # the first run on the clone: what CI pays
        print(f"  {str(tree):<40} in place {in_place:6.2f}  fresh clone {fresh:6.2f}  ({load()})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image_dir", nargs="?", type=Path, default=TREE.parent / "shared" / "data" / "flowers-dev")
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another checkout to time `check` of")
    parser.add_argument("--skip-check", action="store_true", help="time keying only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="content-keys-") as directory:
        scratch = Path(directory)
        modules = scratch / "modules"
        default_modules = Path.home() / ".cache" / "retrain-ci"
        if default_modules.is_dir():
            shutil.copytree(default_modules, modules)  # the converted backbone, read from a copy
        os.environ["RETRAIN_CI_CACHE"] = str(modules)
        key_times(args.image_dir.name, args.image_dir, scratch)
        if args.files:
            started = time.perf_counter()
            built = build_folder(scratch / "built", args.files)
            print(f"built {args.files:,} files in {time.perf_counter() - started:.0f} s")
            key_times(f"built-{args.files}", built, scratch)
            shutil.rmtree(built)
        if not args.skip_check:
            check_times(args.image_dir, scratch, [tree.resolve() for tree in args.tree])


if __name__ == "__main__":
    main()
