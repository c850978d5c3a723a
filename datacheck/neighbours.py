"""Nearest neighbours, for the checks that compare photos: bottlenecks by inner product on unit-length vectors (faiss,
exact up to ``EXACT_LIMIT`` vectors, a graph on a projected copy above it), and perceptual hashes within a few bits
(multi-index hashing), so that no all-pairs matrix is ever built.

Memory per image: its vector (4 bytes a dimension, 5 KB at 1280), above ``EXACT_LIMIT`` its projected copy and graph
(about 1.2 KB), and the neighbours asked for (12 bytes each); per hash, 8 bytes and a key per chunk (about 40 bytes
while searching), and 16 bytes per pair found. The audit keeps its neighbour lists between runs (``KeptNeighbours``:
about 190 bytes an image on disk for each of up to three audits kept, 18 MB at 100,000), so that a pull request's
re-audit searches only its new photos; the hash pairs are cheap enough to find again (100,000 hashes: under a
second)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrain.core.shard_store import ShardStore

# Exact search is quadratic: 100,000 x 1280 floats take about 290 s on 2 cores; 20,000 take about 12 s.
EXACT_LIMIT = 20_000
# Above the limit: vectors randomly projected to this many dimensions are searched on an HNSW graph, and each row's
# candidates (``count`` plus ``EXTRA_CANDIDATES``) re-ranked by their exact inner products on the full vectors. A random
# projection keeps every direction's share of a distance; PCA dropped the directions in which near copies of one photo
# differ from other photos of its subject. Of the exact search's near-duplicate pairs on 100,000 vectors derived from
# flowers-dev (benchmarks/audit_scale.py): PCA found 0.73 from one photo's side, a random projection 0.90 from one side
# and 0.94 from either (as the check looks), 0.97 at search effort 64 instead of 32.
REDUCED_DIMENSIONS = 256
HNSW_LINKS = 16
HNSW_BUILD_EFFORT = 32
HNSW_SEARCH_EFFORT = 64
EXTRA_CANDIDATES = 4
RERANK_ROWS = 1024
# Kept neighbour lists (KeptNeighbours). Bump KEPT_VERSION when the lists a search returns change.
KEPT_VERSION = 1
KEPT_SNAPSHOTS = 3
# A re-audit that must search more than this share of the rows searches all, as a cold audit does.
COLD_SHARE = 0.5
# Rows of the re-audit's products held at once (times the rows searched: 4,096 x 40 floats).
SEARCH_BLOCK_ROWS = 4096
# A BLAS inner product of unit vectors is this close to ``similarities``' (at most about 1e-6 at 1280 dimensions).
SIMILARITY_SLACK = 1e-4
# Rows of one hash bucket compared at once: bounds memory when thousands of hashes share a chunk.
HASH_BLOCK_ROWS = 512


def unit_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows that have a bottleneck (no NaN: the image decoded and its features are finite), and their vectors
    scaled to unit length, so that an inner product is the cosine similarity."""
    rows = np.flatnonzero(~np.isnan(vectors).any(axis=1))
    unit = (vectors[rows] if len(rows) < len(vectors) else vectors).astype(np.float32, copy=False)  # one copy only
    return rows, unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Neighbours:
    """Rows with a bottleneck, their unit-length vectors, and each one's nearest rows (positions in ``rows``) with
    their cosine similarities, most similar first (equal similarities in row order)."""

    rows: np.ndarray
    unit: np.ndarray
    similarities: np.ndarray
    indices: np.ndarray

    @classmethod
    def of(cls, vectors: np.ndarray, count: int, kept: KeptNeighbours | None = None) -> Neighbours:
        """The search; with ``kept`` (lists kept by earlier audits), only what changed since one of them is searched."""
        rows, unit = unit_rows(vectors)
        if not len(rows):  # no image has a bottleneck: nothing to search
            return cls(rows, unit, np.empty((0, 0), np.float32), np.empty((0, 0), np.int64))
        return cls(rows, unit, *(kept.nearest(unit, count) if kept is not None else nearest(unit, count)))

    def first(self, count: int) -> Neighbours:
        """The ``count`` nearest only (a search for more holds those first)."""
        return Neighbours(self.rows, self.unit, self.similarities[:, :count], self.indices[:, :count])


def nearest(unit: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities and row indices of each row's ``count`` nearest rows, most similar first; a row is its own
    nearest (or shares first place with an identical copy). Exact up to ``EXACT_LIMIT`` rows; above it approximate
    neighbours with exact similarities (on 100,000 vectors derived from flowers-dev, every near-duplicate pair the
    exact search finds: benchmarks/audit_scale.py).

    Either search only proposes candidates: the similarities returned are ``similarities``', which do not depend on
    which other rows are searched with a row, so a re-audit that searches a few rows gets the cold search's lists."""
    import faiss  # only audits with bottlenecks need it

    count = min(count, len(unit))
    if _exact(unit):
        index = faiss.IndexFlatIP(unit.shape[1])
        index.add(unit)
        candidates = index.search(unit, min(count + EXTRA_CANDIDATES, len(unit)))[1]
    else:
        candidates = _graph_candidates(unit, count + EXTRA_CANDIDATES)
    return _reranked(unit, np.arange(len(unit)), candidates, count)


def _exact(unit: np.ndarray) -> bool:
    return len(unit) <= EXACT_LIMIT or unit.shape[1] <= REDUCED_DIMENSIONS


def similarities(unit: np.ndarray, rows: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The inner products of each row of ``rows`` with its ``candidates`` (-inf where a candidate is -1: none).

    Each pair's sum runs over the dimensions in one fixed order, so its value is the same whichever rows are computed
    with it: a BLAS product (faiss) blocks the sum by the shape of the whole batch, so a row's similarities there
    change in their last bits when 40 photos join the dataset, and a warm search could not equal a cold one."""
    found = np.empty(candidates.shape, np.float32)
    for start in range(0, len(rows), RERANK_ROWS):
        block = candidates[start : start + RERANK_ROWS]
        found[start : start + RERANK_ROWS] = np.einsum(
            "nd,nkd->nk", unit[rows[start : start + RERANK_ROWS]], unit[np.maximum(block, 0)]
        )
    found[candidates < 0] = -np.inf
    return found


def _reranked(unit: np.ndarray, rows: np.ndarray, candidates: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` best of each row's candidates (and the row itself) by ``similarities``."""
    own = rows[:, None]
    candidates = np.concatenate([own, np.where(candidates == own, -1, candidates)], axis=1)
    return _ordered(similarities(unit, rows, candidates), candidates, count)


def _ordered(found: np.ndarray, candidates: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``count`` most similar candidates, most similar first and equal ones in row order, so that a search
    and a re-audit's merge order ties alike."""
    order = np.lexsort((candidates, -found), axis=1)[:, :count]
    return np.take_along_axis(found, order, axis=1), np.take_along_axis(candidates, order, axis=1).astype(np.int64)


def _graph_candidates(unit: np.ndarray, count: int) -> np.ndarray:
    """Each row's approximate nearest rows: an HNSW graph on randomly projected vectors. For unit vectors Euclidean
    distance orders as cosine similarity does."""
    import faiss

    projection = faiss.RandomRotationMatrix(unit.shape[1], REDUCED_DIMENSIONS)
    projection.init(0)
    reduced = projection.apply(unit)
    index = faiss.IndexHNSWFlat(REDUCED_DIMENSIONS, HNSW_LINKS)
    index.hnsw.efConstruction = HNSW_BUILD_EFFORT
    index.add(reduced)
    index.hnsw.efSearch = HNSW_SEARCH_EFFORT
    return index.search(reduced, count)[1]


class KeptNeighbours:
    """Neighbour lists kept between audits, so that a re-audit (a pull request's) searches only what changed.

    A row is known by its vector (a digest of its unit-length bytes, so another module's features are other rows),
    and a kept list names its neighbours the same way. The lists of one audit are one snapshot, all relative to that
    audit's rows; a re-audit takes the snapshot sharing most rows with it and searches only its new rows (against
    all) and the rows whose list names one that left; every other row's list is merged with its similarities to the
    new rows. Up to ``EXACT_LIMIT`` rows that equals the cold search (a row's top ``count`` among the kept rows is its
    kept list; the new rows are the only others); above it, the searched rows get exact lists, the others keep their
    graph search's, so the result is at least as close to an exact search as a cold one (benchmarks/audit_scale.py).

    Snapshots live beside the image-property cache, in ``neighbour-lists/v<KEPT_VERSION>/``: the newest
    ``KEPT_SNAPSHOTS`` (main's and the pull requests' audits), each row's key and list (about 190 bytes a row at 12
    neighbours). A damaged one is never trusted, only searched again.
    """

    def __init__(self, root: Path) -> None:
        self.folder = Path(root) / "neighbour-lists" / f"v{KEPT_VERSION}"
        self.counts: dict[str, int] | None = None  # rows searched / whose list was kept (merged with the new rows)
        self.warnings: list[str] = []  # a damaged snapshot, for the shell to show

    def nearest(self, unit: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """What ``nearest(unit, count)`` returns, from a kept snapshot where one fits."""
        count = min(count, len(unit))
        keys = row_keys(unit)
        ids = np.array([int(key[:16], 16) for key in keys], np.uint64)
        if len(unit) <= 2 * (count + EXTRA_CANDIDATES) or len(np.unique(ids)) < len(ids):
            self.counts = {"searched": len(unit), "reused": 0}
            return nearest(unit, count)  # tiny (nothing to save), or two rows' keys begin alike: never mixed up
        family = self.folder / (
            ("exact" if _exact(unit) else f"graph-{REDUCED_DIMENSIONS}-{HNSW_SEARCH_EFFORT}") + f"-k{count}"
        )
        snapshot, found, kept_ids, kept_similarities = self._read(family, keys, count)
        positions = _positions(ids, kept_ids)
        kept = found & (positions >= 0).all(axis=1) & np.isfinite(kept_similarities).all(axis=1)
        searched = np.flatnonzero(~kept)
        cold = not kept.any() or len(searched) > len(unit) * COLD_SHARE
        if cold or (not _exact(unit) and len(searched) * len(unit) > EXACT_LIMIT**2):
            result = nearest(unit, count)
            searched = np.arange(len(unit))
        else:
            result = _merged(unit, count, searched, ~found, positions, kept_similarities, kept)
        self.counts = {"searched": len(searched), "reused": len(unit) - len(searched)}
        self._keep(family, keys, ids, *result, snapshot)
        return result

    def _read(
        self, family: Path, keys: list[str], count: int
    ) -> tuple[Path | None, np.ndarray, np.ndarray, np.ndarray]:
        """The kept snapshot closest to ``keys`` (fewest rows added or removed since): its folder, which keys it has,
        and their lists."""
        best = (None, np.zeros(len(keys), bool), np.zeros((len(keys), count), np.uint64))
        best_similarities, fewest_changes = np.zeros((len(keys), count), np.float32), len(keys)
        for snapshot in _newest(family.glob("*"))[:KEPT_SNAPSHOTS]:
            records = np.zeros((len(keys), 1), _record(count))
            read = _store(snapshot, count).read(keys, records)
            self.warnings += [f"neighbour lists {shard.name}: {why}; searched again" for shard, why in read.damaged]
            rows = int(snapshot.name.split("-")[0]) if snapshot.name.split("-")[0].isdigit() else len(keys)
            changes = len(keys) + rows - 2 * int(read.found.sum())  # added, and removed (its rows name: no key)
            if read.found.any() and changes < fewest_changes:
                best, fewest_changes = (snapshot, read.found, records["neighbours"][:, 0]), changes
                best_similarities = records["similarities"][:, 0]
        return *best, best_similarities

    def _keep(
        self, family: Path, keys: list[str], ids: np.ndarray, found: np.ndarray, indices: np.ndarray, used: Path | None
    ) -> None:
        # ``found``, ``indices``: the lists to keep, as ``nearest`` returns them.
        """Store this audit's lists as a snapshot (unless the one used holds these very rows), then drop all but the
        newest ``KEPT_SNAPSHOTS``."""
        digest = hashlib.sha1("\n".join(sorted(keys)).encode()).hexdigest()[:20]
        snapshot = family / f"{len(keys)}-{digest}"  # its row count: how many rows a re-audit's lacks
        if snapshot != used or not _store(snapshot, indices.shape[1]).shards():
            records = np.zeros((len(keys), 1), _record(indices.shape[1]))
            records["neighbours"][:, 0] = ids[indices]
            records["similarities"][:, 0] = found
            shutil.rmtree(snapshot, ignore_errors=True)
            _store(snapshot, indices.shape[1]).add(keys, records)
        for used_now in (used, snapshot):  # newest by use: main's snapshot, used by each pull request, stays
            if used_now is not None:
                with contextlib.suppress(OSError):  # gone meanwhile (another audit pruned it), or not ours to touch
                    os.utime(used_now)
        for old in _newest(self.folder.glob("*/*"))[KEPT_SNAPSHOTS:]:
            shutil.rmtree(old, ignore_errors=True)


def row_keys(unit: np.ndarray) -> list[str]:
    """A key per row: the SHA-1 of its vector's bytes, and for a second copy of one vector its occurrence too (the
    keys of a snapshot are unique)."""
    keys, seen = [], {}
    for row in unit:
        key = hashlib.sha1(row.tobytes()).hexdigest()
        seen[key] = seen.get(key, -1) + 1
        keys.append(hashlib.sha1(f"{key}:{seen[key]}".encode()).hexdigest() if seen[key] else key)
    return keys


def _merged(
    unit: np.ndarray,
    count: int,
    searched: np.ndarray,
    new: np.ndarray,
    positions: np.ndarray,
    kept_similarities: np.ndarray,
    kept: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The lists of a re-audit: ``searched`` rows (new ones, and those whose list names a row that left) searched
    against all; every ``kept`` row's list merged with the ``new`` rows that are at least as similar as its last."""
    new_rows = np.flatnonzero(new)
    similarities_found = np.empty((len(unit), count), np.float32)
    indices = np.empty((len(unit), count), np.int64)
    last = kept_similarities[:, -1]
    pool = count + EXTRA_CANDIDATES
    pool_rows, pool_products, merged_pairs = [], [], []
    for start in range(0, len(unit), SEARCH_BLOCK_ROWS):
        block = np.arange(start, min(start + SEARCH_BLOCK_ROWS, len(unit)))
        products = unit[block] @ unit[searched].T  # BLAS: only to choose candidates, within SIMILARITY_SLACK
        best = np.argpartition(-products, min(pool, len(block)) - 1, axis=0)[:pool]
        pool_rows.append(block[best].T)
        pool_products.append(np.take_along_axis(products, best, axis=0).T)
        to_new = products[:, np.searchsorted(searched, new_rows)]
        rows, columns = np.nonzero(kept[block, None] & (to_new >= last[block, None] - SIMILARITY_SLACK))
        merged_pairs.append(np.stack([block[rows], new_rows[columns]], axis=1))
    candidates, products = np.hstack(pool_rows), np.hstack(pool_products)
    best = np.argpartition(-products, min(pool, products.shape[1]) - 1, axis=1)[:, :pool]
    similarities_found[searched], indices[searched] = _reranked(
        unit, searched, np.take_along_axis(candidates, best, axis=1), count
    )
    rows = np.flatnonzero(kept)
    similarities_found[rows], indices[rows] = _ordered(kept_similarities[rows], positions[rows], count)
    pairs = np.concatenate(merged_pairs)  # (kept row, new row), in row order
    if len(pairs):
        merged, first = np.unique(pairs[:, 0], return_index=True)
        row = np.searchsorted(merged, pairs[:, 0])
        slot = np.arange(len(pairs)) - first[row]
        extra = np.full((len(merged), slot.max() + 1), -1, np.int64)
        extra_similarities = np.full(extra.shape, -np.inf, np.float32)
        extra[row, slot] = pairs[:, 1]
        extra_similarities[row, slot] = similarities(unit, pairs[:, 0], pairs[:, 1:])[:, 0]
        similarities_found[merged], indices[merged] = _ordered(
            np.concatenate([kept_similarities[merged], extra_similarities], axis=1),
            np.concatenate([positions[merged], extra], axis=1),
            count,
        )
    return similarities_found, indices


def _positions(ids: np.ndarray, kept_ids: np.ndarray) -> np.ndarray:
    """Where each kept neighbour is among this audit's rows (-1: it left)."""
    order = np.argsort(ids)
    at = np.minimum(np.searchsorted(ids[order], kept_ids), len(ids) - 1)
    return np.where(ids[order][at] == kept_ids, order[at], -1)


def _record(count: int) -> np.dtype:
    return np.dtype([("neighbours", "<u8", (count,)), ("similarities", "<f4", (count,))])


def _store(snapshot: Path, count: int) -> ShardStore:
    return ShardStore(snapshot, dtype=_record(count), what="neighbour lists")


def _newest(folders: Iterable[Path]) -> list[Path]:
    """The folders among ``folders``, the most recently used first."""
    existing = []
    for folder in folders:
        with contextlib.suppress(FileNotFoundError):
            if folder.is_dir():
                existing.append((folder.stat().st_mtime_ns, folder))
    return [folder for _, folder in sorted(existing, reverse=True)]


def hash_pairs(codes: np.ndarray, max_bits: int) -> np.ndarray:
    """Pairs ``(i, j)``, ``i < j``, of 64-bit ``codes`` at most ``max_bits`` bits apart, each once (shape (n, 2)).

    Multi-index hashing: cut the bits into ``max_bits + 1`` chunks; two codes that close agree on at least one whole
    chunk, so only codes sharing a chunk are compared, bucket by bucket, and a pair is kept in the first chunk they
    share. Exact for any ``max_bits``; fast while chunks stay long (a million hashes within 4 bits: seconds).
    """
    codes = np.asarray(codes, dtype=np.uint64)
    if max_bits < 0 or max_bits >= 64:  # no pair, or every pair
        return np.stack(np.triu_indices(len(codes) if max_bits >= 0 else 0, 1), axis=1).astype(np.int64)
    chunks = max_bits + 1
    widths = [64 // chunks + (chunk < 64 % chunks) for chunk in range(chunks)]
    shifts = np.cumsum([0, *widths[:-1]])
    masks = [(1 << width) - 1 for width in widths]
    keys = [(codes >> np.uint64(shift)) & np.uint64(mask) for shift, mask in zip(shifts, masks, strict=True)]
    found = [np.empty((0, 2), np.int64)]
    for chunk, key in enumerate(keys):
        order, starts, sizes = _buckets(key)
        small = sizes <= HASH_BLOCK_ROWS
        found += _small_bucket_pairs(codes, keys[:chunk], order, starts[small], sizes[small], max_bits)
        for start, size in zip(starts[~small], sizes[~small], strict=True):
            members = order[start : start + size]
            found += [_close_pairs(codes, keys[:chunk], rows, members, max_bits) for rows in _blocks(members)]
    return np.concatenate(found)


def _buckets(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows in order of ``key``, and where each value held by two rows or more starts in that order and its rows."""
    order = np.argsort(key, kind="stable")
    starts = np.flatnonzero(np.r_[True, key[order][1:] != key[order][:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    return order, starts[sizes > 1], sizes[sizes > 1]


def _small_bucket_pairs(
    codes: np.ndarray,
    earlier_keys: list[np.ndarray],
    order: np.ndarray,
    starts: np.ndarray,
    sizes: np.ndarray,
    max_bits: int,
) -> list[np.ndarray]:
    """``_close_pairs`` of every bucket at once, one offset within the buckets at a time: a loop per bucket costs
    more than its comparisons when there are tens of thousands of small buckets (100,000 hashes within 4 bits)."""
    if not len(sizes):
        return []
    ends = np.repeat(starts + sizes, sizes)
    positions = ends - (np.arange(len(ends)) - np.repeat(np.cumsum(sizes) - sizes, sizes)) - 1  # each bucket's rows
    found = []
    for offset in range(1, int(sizes.max())):
        inside = positions + offset < ends
        positions, ends = positions[inside], ends[inside]
        first, second = order[positions], order[positions + offset]
        keep = np.bitwise_count(codes[first] ^ codes[second]) <= max_bits
        for key in earlier_keys:
            keep &= key[first] != key[second]
        found.append(np.stack([np.minimum(first, second)[keep], np.maximum(first, second)[keep]], axis=1))
    return found


def _blocks(members: np.ndarray) -> list[np.ndarray]:
    return [members[start : start + HASH_BLOCK_ROWS] for start in range(0, len(members), HASH_BLOCK_ROWS)]


def _close_pairs(
    codes: np.ndarray, earlier_keys: list[np.ndarray], rows: np.ndarray, members: np.ndarray, max_bits: int
) -> np.ndarray:
    """Pairs of ``rows`` with the other ``members`` of their bucket within ``max_bits``, not already found in an
    earlier chunk (one they share too)."""
    near, other = np.nonzero(np.bitwise_count(codes[rows][:, None] ^ codes[members][None, :]) <= max_bits)
    first, second = rows[near], members[other]
    keep = first < second
    for key in earlier_keys:
        keep &= key[first] != key[second]
    return np.stack([first[keep], second[keep]], axis=1).astype(np.int64)
