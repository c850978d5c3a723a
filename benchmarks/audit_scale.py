"""The audit at scale: images/s of each stage and peak memory on N distinct photos, and the near-duplicate searches.

    python benchmarks/audit_scale.py [IMAGE_DIR] [--photos 10000 ...] [--hashes 1000000] [--vectors 100000]

1. flowers-dev (IMAGE_DIR) audited with the pixel checks by 7487a48's code (``--old-tree``, default ../main) and by
   this tree, each in its own process: the per-image pass and each check, seconds, images/s, peak RSS.
2. For each N of ``--photos``: N distinct photos built from IMAGE_DIR by deterministic crops, rescales and JPEG
   re-encodings in a temporary folder, then audited the same way (fresh property cache). Bottlenecks at N take
   about 14 ms of CPU a photo (25 minutes at 100,000 on 2 cores), so the bottleneck checks run on synthetic vectors
   (each photo's source's real bottleneck, perturbed), and say so.
3. Perceptual-hash pairs within 4 bits: 7487a48's all-pairs matrix and this tree's search on flowers-dev's hashes,
   then on 100,000 and ``--hashes`` hashes clustered as real ones are (flowers-dev's with up to 10 bits flipped), with
   faiss's IndexBinaryMultiHash for comparison.
4. Bottleneck neighbours on ``--vectors`` vectors derived from flowers-dev's (each scaled by noise, a tenth of them
   near copies of another): seconds of the exact and the approximate search, and the approximate search's recall of
   the exact near-duplicate pairs (measured on a sample of photos: an exact search of all of them takes minutes);
   and the recall on flowers-dev itself, the approximate search forced on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers-dev"
OLD_TREE = Path(__file__).resolve().parents[2] / "main"


def peak_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent across exec)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def audit_stages(root: Path, cache: Path, vectors: Path | None) -> dict:
    """In a child process: the pixel pass and each check's seconds, and the peak RSS after each."""
    from datacheck.audit import audit_data
    from datacheck.registry import Need, selected_checks
    from datacheck.settings import AuditSettings

    settings = AuditSettings(property_cache=cache)
    started = time.perf_counter()
    data = audit_data(root, settings)
    stages = [("per-image pass", time.perf_counter() - started, peak_mb())]
    print(f"  ... {stages[-1]}", file=sys.stderr, flush=True)
    if vectors is not None:  # built in photo order: each file's name ends in -v<its index>
        data.bottlenecks = np.load(vectors)[data.images["path"].str.extract(r"-v(\d+)\.jpg$")[0].astype(int)]
    for check in selected_checks():
        if Need.BOTTLENECKS in check.needs and vectors is None:
            continue
        started = time.perf_counter()
        check().run(data)
        stages.append((check.id, time.perf_counter() - started, peak_mb()))
        print(f"  ... {stages[-1]}", file=sys.stderr, flush=True)  # progress, in case the run is cut short
    return {"images": len(data.images), "stages": stages}


def run_audit(tree: Path, root: Path, vectors: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        command = [sys.executable, __file__, "--child", str(root), cache, str(vectors or "")]
        env = {**os.environ, "PYTHONPATH": str(tree)}
        return json.loads(subprocess.run(command, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout)


def print_audit(title: str, result: dict) -> None:
    print(f"{title}: {result['images']} images")
    for stage, seconds, peak in result["stages"]:
        rate = f"{result['images'] / seconds:10.0f} images/s" if seconds > 0 else ""
        print(f"  {stage:24s} {seconds:8.2f} s {rate}  peak RSS {peak:6.0f} MB")
    print(f"  total {sum(stage[1] for stage in result['stages']):.1f} s, peak RSS {result['stages'][-1][2]:.0f} MB")


def seeded_crop(source: Path, rng: np.random.Generator) -> Image.Image:
    """A crop of 70-95% of each side of ``source`` at a place ``rng`` draws."""
    with Image.open(source) as image:
        image = image.convert("RGB")
        width, height = image.size
        keep = rng.uniform(0.7, 0.95, 2)
        left, top = rng.uniform(0, 1 - keep[0]) * width, rng.uniform(0, 1 - keep[1]) * height
        return image.crop((int(left), int(top), int(left + keep[0] * width), int(top + keep[1] * height)))


def variant(job: tuple[Path, Path, int]) -> None:
    """One distinct photo: a crop of 70-95% of each side at a seeded place, rescaled, re-encoded."""
    source, target, seed = job
    rng = np.random.default_rng(seed)
    crop = seeded_crop(source, rng)
    scale = rng.uniform(0.5, 1.0)
    crop = crop.resize((max(32, int(crop.width * scale)), max(32, int(crop.height * scale))))
    crop.save(target, quality=int(rng.integers(70, 96)))


def build_photos(image_dir: Path, root: Path, count: int) -> list[int]:
    """``count`` photos under ``root`` by class, and for each the index of its source photo in sorted order."""
    photos = sorted(path for path in image_dir.rglob("*.jpg"))
    jobs, sources = [], []
    for index in range(count):
        source = photos[index % len(photos)]
        (root / source.parent.name).mkdir(parents=True, exist_ok=True)
        jobs.append((source, root / source.parent.name / f"{source.stem}-v{index}.jpg", index))
        sources.append(index % len(photos))
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(variant, jobs, chunksize=64))
    return sources


def real_data(image_dir: Path, bottleneck_dir: Path) -> tuple[list[str], np.ndarray]:
    """flowers-dev's perceptual hashes and bottlenecks (from the shared cache; computed if missing)."""
    from datacheck.audit import audit_data
    from datacheck.settings import AuditSettings
    from retrain.core.settings import ModuleSettings
    from retrain.training.bottlenecks import bottleneck_source

    settings = AuditSettings(module=ModuleSettings(bottleneck_dir=bottleneck_dir))
    data = audit_data(image_dir, settings, bottlenecks=bottleneck_source(settings.module))
    readable = data.images["error"].isna().to_numpy()
    return list(data.images["phash"][readable]), data.bottlenecks[readable]


def synthetic_vectors(real: np.ndarray, sources: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each source's real bottleneck scaled by noise (a distinct photo), a tenth of them near copies of the row
    before (smaller noise), so the search has near-duplicate pairs to find."""
    rng = np.random.default_rng(seed)
    vectors = np.empty((len(sources), real.shape[1]), np.float32)
    for start in range(0, len(sources), 10_000):
        rows = slice(start, start + 10_000)
        noise = rng.standard_normal((len(sources[rows]), real.shape[1]), dtype=np.float32)
        vectors[rows] = real[sources[rows]] * np.exp(rng.uniform(0.8, 1.5, (len(noise), 1)).astype(np.float32) * noise)
    copies = np.sort(rng.choice(np.arange(1, len(sources)), len(sources) // 10, replace=False))
    for start in range(0, len(copies), 10_000):
        rows = copies[start : start + 10_000]
        noise = rng.standard_normal((len(rows), real.shape[1]), dtype=np.float32)
        vectors[rows] = vectors[rows - 1] * np.exp(rng.uniform(0.2, 0.5, (len(rows), 1)).astype(np.float32) * noise)
    return vectors


def old_hash_pairs(hashes: list[str], max_bits: int) -> set[tuple[int, int]]:
    """7487a48's search over distinct hashes: the distance matrix, 1024 rows at a time."""
    signs = np.array([np.unpackbits(np.frombuffer(bytes.fromhex(h), np.uint8)) for h in hashes], dtype=np.float32)
    signs = 2 * signs - 1
    pairs = set()
    for start in range(0, len(hashes), 1024):
        distances = (64 - signs[start : start + 1024] @ signs.T) / 2
        pairs |= {(start + i, j) for i, j in zip(*np.nonzero(distances <= max_bits), strict=True) if start + i < j}
    return pairs


def perturbed_hashes(hashes: list[str], count: int, seed: int = 0) -> np.ndarray:
    """Up to ``count`` distinct 64-bit codes, each a real hash with 2 to 10 random bits flipped (a bit drawn twice
    flips back, so some get fewer)."""
    rng = np.random.default_rng(seed)
    real = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    codes = real[rng.integers(0, len(real), count)]
    flips = rng.integers(2, 11, count)
    for bit in range(10):
        chosen = rng.integers(0, 64, count).astype(np.uint64)
        codes = np.where(flips > bit, codes ^ (np.uint64(1) << chosen), codes)
    return np.unique(codes)


def hash_benchmark(hashes: list[str], count: int) -> None:
    import faiss

    from datacheck.neighbours import hash_pairs

    flowers = list(dict.fromkeys(hashes))
    derived = [f"{code:016x}" for code in perturbed_hashes(hashes, 100_000).tolist()]
    for title, distinct in (("flowers-dev", flowers), ("100,000 derived", derived)):
        started = time.perf_counter()
        old = old_hash_pairs(distinct, 4)
        old_seconds = time.perf_counter() - started
        started = time.perf_counter()
        new = hash_pairs(np.array([int(h, 16) for h in distinct], dtype=np.uint64), 4)
        new_seconds = time.perf_counter() - started
        same = old == {tuple(pair) for pair in new.tolist()}
        print(f"hash pairs within 4 bits, {title} ({len(distinct)} distinct hashes): 7487a48 {old_seconds:.3f} s,")
        ratio = old_seconds / max(new_seconds, 1e-9)
        print(f"  this tree {new_seconds:.3f} s ({ratio:.1f}x), {len(old)} pairs, same pairs: {same}")
    codes = perturbed_hashes(hashes, count)
    before = peak_mb()
    started = time.perf_counter()
    pairs = hash_pairs(codes, 4)
    seconds = time.perf_counter() - started
    print(f"hash pairs on {len(codes)} hashes derived from flowers-dev's: {seconds:.1f} s, {len(pairs)} pairs,")
    print(
        f"  peak RSS {before:.0f} MB before, {peak_mb():.0f} MB after; 7487a48's matrix would take 1024 x "
        f"{len(codes)} floats a block ({4 * 1024 * len(codes) / 1e9:.1f} GB)"
    )
    started = time.perf_counter()
    index = faiss.IndexBinaryMultiHash(64, 3, 21)
    index.nflip = 1
    as_bytes = codes.astype(">u8").view(np.uint8).reshape(-1, 8)
    index.add(as_bytes)
    found = 0
    for start in range(0, len(codes), 65536):
        limits, _, neighbours = index.range_search(as_bytes[start : start + 65536], 5)
        queries = np.repeat(np.arange(start, start + len(limits) - 1), np.diff(limits).astype(np.int64))
        found += int((queries < neighbours).sum())
    print(
        f"  faiss IndexBinaryMultiHash (3 tables of 21 bits, 1 flip): {time.perf_counter() - started:.1f} s, "
        f"{found} pairs"
    )


def judged_pairs(
    similarities: np.ndarray, neighbours: np.ndarray, typical: dict, rows: np.ndarray, *, only: set | None = None
) -> set:
    """The near-duplicate rule of datacheck.checks.duplicates on the neighbour lists of ``rows`` (with neighbours in
    ``only``, when given)."""
    from datacheck.settings import AuditSettings

    settings = AuditSettings()
    pairs = set()
    for row, sims, ids in zip(rows, similarities, neighbours, strict=True):
        for similarity, other in zip(sims, ids, strict=True):
            if other == row or similarity < settings.near_duplicate_similarity or (only and int(other) not in only):
                continue
            if similarity - (typical[int(row)] + typical[int(other)]) / 2 >= settings.near_duplicate_margin:
                pairs.add(tuple(sorted((int(row), int(other)))))
    return pairs


def vector_benchmark(real: np.ndarray, count: int) -> None:
    import faiss

    import datacheck.neighbours as neighbours
    from datacheck.checks.duplicates import NEIGHBOURS, _EmbeddingCandidates
    from datacheck.settings import AuditSettings

    exact = _EmbeddingCandidates(real, AuditSettings()).found
    limit = neighbours.EXACT_LIMIT
    neighbours.EXACT_LIMIT = 0
    approximate = _EmbeddingCandidates(real, AuditSettings()).found
    neighbours.EXACT_LIMIT = limit
    print(
        f"bottleneck pairs on flowers-dev: exact {len(exact)}, approximate {len(approximate)}, "
        f"recall {len(exact.keys() & approximate.keys()) / max(len(exact), 1):.3f}"
    )
    sources = np.random.default_rng(1).integers(0, len(real), count)
    _, unit = neighbours.unit_rows(synthetic_vectors(real, sources))
    started = time.perf_counter()
    similarities, found = neighbours.nearest(unit, NEIGHBOURS + 2)
    seconds = time.perf_counter() - started
    typical = dict(enumerate(similarities[:, 2:].mean(axis=1)))
    sample = np.random.default_rng(2).choice(count, min(count, 2000), replace=False)
    # A pair is found from either photo's neighbours, as the check finds it: the sampled photos' lists, and the lists
    # that hold a sampled photo.
    approximate = judged_pairs(similarities[sample], found[sample], typical, sample)
    holders = np.flatnonzero(np.isin(found, sample).any(axis=1))
    approximate |= judged_pairs(similarities[holders], found[holders], typical, holders, only=set(sample.tolist()))
    index = faiss.IndexFlatIP(unit.shape[1])
    index.add(unit)
    started = time.perf_counter()
    exact_similarities, exact_found = index.search(unit[sample], NEIGHBOURS + 2)
    exact_seconds = (time.perf_counter() - started) * count / len(sample)
    partners = np.unique(exact_found[exact_similarities >= AuditSettings().near_duplicate_similarity])
    partner_similarities, partner_found = index.search(unit[partners], NEIGHBOURS + 2)
    exact_typical = dict(zip(sample.tolist(), exact_similarities[:, 2:].mean(axis=1), strict=True))
    exact_typical |= dict(zip(partners.tolist(), partner_similarities[:, 2:].mean(axis=1), strict=True))
    exact = judged_pairs(exact_similarities, exact_found, exact_typical, sample)
    exact |= judged_pairs(partner_similarities, partner_found, exact_typical, partners, only=set(sample.tolist()))
    print(
        f"bottleneck neighbours of {count} vectors derived from flowers-dev's: {seconds:.1f} s "
        f"(exact, extrapolated from {len(sample)} queries: {exact_seconds:.0f} s), peak RSS {peak_mb():.0f} MB"
    )
    print(
        f"  near-duplicate pairs with {len(sample)} sampled photos: exact {len(exact)}, approximate "
        f"{len(approximate)}, recall {len(exact & approximate) / max(len(exact), 1):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image_dir", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--photos", type=int, nargs="*", default=[10_000])
    parser.add_argument("--hashes", type=int, default=1_000_000)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--old-tree", type=Path, default=OLD_TREE)
    parser.add_argument("--bottleneck-dir", type=Path, default=Path("/tmp/bottleneck"))
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[1]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print_audit(f"7487a48 ({args.old_tree}) on {args.image_dir.name}", run_audit(args.old_tree, args.image_dir))
    print_audit(f"this tree on {args.image_dir.name}", run_audit(here, args.image_dir))
    hashes, real = real_data(args.image_dir, args.bottleneck_dir)
    hash_benchmark(hashes, args.hashes)
    vector_benchmark(real, args.vectors)
    for count in args.photos:
        with tempfile.TemporaryDirectory() as scratch:
            started = time.perf_counter()
            sources = build_photos(args.image_dir, Path(scratch) / "photos", count)
            print(f"built {count} photos in {time.perf_counter() - started:.0f} s")
            vectors = Path(scratch) / "vectors.npy"
            np.save(vectors, synthetic_vectors(real, np.array(sources)))
            title = f"this tree on {count} photos (bottleneck checks on synthetic vectors)"
            print_audit(title, run_audit(here, Path(scratch) / "photos", vectors))
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        root, cache, vectors = sys.argv[2:5]
        print(json.dumps(audit_stages(Path(root), Path(cache), Path(vectors) if vectors else None)))
    else:
        main()
