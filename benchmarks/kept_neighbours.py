"""Neighbour lists kept between audits (datacheck.neighbours.KeptNeighbours): the bottleneck neighbour search of a
cold audit against a re-audit with 40 photos added, on flowers-dev's bottlenecks and on synthetic vectors derived from
them (benchmarks/audit_scale.py's ``synthetic_vectors``), and the perceptual-hash pairs' cost for comparison.

Up to ``EXACT_LIMIT`` the re-audit's lists must equal the cold search's (asserted); above it the script measures the
recall of the top 12 against an exact search of sampled rows, for the cold graph search and for the re-audit.

    .venv/bin/python benchmarks/kept_neighbours.py --bottleneck-dir SCRATCH [--sizes 1837 20000 100000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audit_scale import DEFAULT_DATA, peak_mb, perturbed_hashes, real_data, synthetic_vectors  # noqa: E402

COUNT = 12  # near_duplicates' search: NEIGHBOURS + 2
ADDED = 40
SAMPLE = 2000


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def timed(search, *args):
    """The result, and the seconds it took: wall clock, and CPU (all threads), which a busy machine inflates less."""
    started, cpu = time.perf_counter(), time.process_time()
    result = search(*args)
    return result, Seconds(time.perf_counter() - started, time.process_time() - cpu)


class Seconds(float):
    """Wall-clock seconds that print with their CPU seconds."""

    def __new__(cls, wall: float, cpu: float) -> Seconds:
        made = super().__new__(cls, wall)
        made.cpu = cpu
        return made

    def __format__(self, spec: str) -> str:
        return f"{float(self):{spec}} s ({self.cpu:{spec}} CPU s)"


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact lists' neighbours (past the row itself) that ``found`` lists too."""
    hits = sum(len(set(a[1:]) & set(b[1:])) for a, b in zip(found, exact, strict=True))
    return hits / (exact.shape[0] * (exact.shape[1] - 1))


def one_size(vectors: np.ndarray, title: str) -> None:
    """Main's audit on all but ``ADDED`` rows (spread through the table), then the pull request's on all."""
    import faiss

    from datacheck.checks.duplicates import _EmbeddingCandidates
    from datacheck.neighbours import EXACT_LIMIT, KeptNeighbours, Neighbours
    from datacheck.settings import AuditSettings

    rng = np.random.default_rng(3)
    added = np.sort(rng.choice(len(vectors), ADDED, replace=False))
    main_rows = np.setdiff1d(np.arange(len(vectors)), added)
    main = vectors[main_rows]
    Neighbours.of(main[:100], COUNT)  # imports faiss: not the search's cost
    with tempfile.TemporaryDirectory() as root:
        first = KeptNeighbours(Path(root))
        main_lists, main_seconds = timed(Neighbours.of, main, COUNT, first)
        kept_bytes = folder_bytes(Path(root))
        cold, cold_seconds = timed(Neighbours.of, vectors, COUNT)
        second = KeptNeighbours(Path(root))
        warm, warm_seconds = timed(Neighbours.of, vectors, COUNT, second)
        print(
            f"{title}: {len(main)} rows + {ADDED}: main's audit (cold, keeping its lists) {main_seconds:.2f}; the "
            f"pull request's cold {cold_seconds:.2f}, re-audit {warm_seconds:.2f} "
            f"({cold_seconds.cpu / warm_seconds.cpu:.0f}x less CPU), rows searched {second.counts['searched']}, "
            f"lists kept {second.counts['reused']}"
        )
        print(
            f"  kept on disk: {kept_bytes / 1e6:.1f} MB a snapshot ({kept_bytes / len(main):.0f} bytes a row), "
            f"{folder_bytes(Path(root)) / 1e6:.1f} MB with the pull request's; lists in memory "
            f"{(warm.indices.nbytes + warm.similarities.nbytes) / 1e6:.1f} MB; peak RSS {peak_mb():.0f} MB"
        )
    if len(vectors) <= EXACT_LIMIT:
        same = np.array_equal(warm.indices, cold.indices) and np.array_equal(warm.similarities, cold.similarities)
        print(f"  re-audit lists identical to the cold search's: {same}")
        assert same, "a re-audit's neighbour lists differ from the cold search's"
        return
    sample = np.sort(np.random.default_rng(4).choice(len(vectors), SAMPLE, replace=False))
    index = faiss.IndexFlatIP(cold.unit.shape[1])
    index.add(cold.unit)
    exact = index.search(cold.unit[sample], COUNT)[1]
    print(
        f"  recall of the top {COUNT - 1} against an exact search ({SAMPLE} sampled rows): cold graph "
        f"{recall(cold.indices[sample], exact):.4f}, re-audit {recall(warm.indices[sample], exact):.4f}; lists "
        f"shared with the cold graph search's: re-audit {recall(warm.indices, cold.indices):.4f}, main's graph "
        f"search (the same rows but 40) {recall(main_rows[main_lists.indices], cold.indices[main_rows]):.4f}"
    )
    pairs = {
        name: set(_EmbeddingCandidates(lists, AuditSettings()).found)
        for name, lists in (("cold", cold), ("warm", warm))
    }
    main_found = _EmbeddingCandidates(main_lists, AuditSettings()).found
    main_pairs = {tuple(main_rows[list(pair)].tolist()) for pair in main_found}
    cold_on_main = {pair for pair in pairs["cold"] if not set(pair) & set(added.tolist())}
    print(
        f"  near-duplicate candidate pairs: cold graph {len(pairs['cold'])}, re-audit {len(pairs['warm'])}, in both "
        f"{len(pairs['cold'] & pairs['warm'])}; two cold graph searches (main's, the pull request's) on main's rows: "
        f"{len(main_pairs)} and {len(cold_on_main)}, in both {len(main_pairs & cold_on_main)}"
    )


def hash_cost(hashes: list[str], sizes: list[int]) -> None:
    """The perceptual-hash pairs as near_duplicates searches them, at each size."""
    import pandas as pd

    from datacheck.checks.duplicates import _hash_pairs

    for size in sizes:
        codes = hashes if size <= len(hashes) else [f"{code:016x}" for code in perturbed_hashes(hashes, size)]
        pairs, seconds = timed(_hash_pairs, pd.Series(codes[:size]), 4)
        print(f"perceptual-hash pairs within 4 bits, {min(size, len(codes))} hashes: {seconds:.2f}, {len(pairs)} pairs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image_dir", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--bottleneck-dir", type=Path, required=True, help="a scratch bottleneck cache")
    parser.add_argument("--sizes", type=int, nargs="*", default=[20_000, 100_000])
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    hashes, real = real_data(args.image_dir, args.bottleneck_dir)
    hash_cost(hashes, [len(hashes), *args.sizes])
    one_size(real, f"{args.image_dir.name} bottlenecks")
    for size in args.sizes:
        sources = np.random.default_rng(1).integers(0, len(real), size)
        one_size(synthetic_vectors(real, sources), f"{size} synthetic vectors")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
