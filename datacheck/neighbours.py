"""Nearest neighbours, for the checks that compare photos: bottlenecks by inner product on unit-length vectors (faiss,
exact up to ``EXACT_LIMIT`` vectors, a graph on a projected copy above it), and perceptual hashes within a few bits
(multi-index hashing), so that no all-pairs matrix is ever built.

Memory per image: its vector (4 bytes a dimension, 5 KB at 1280), above ``EXACT_LIMIT`` its projected copy and graph
(about 1.2 KB), and the neighbours asked for (12 bytes each); per hash, 8 bytes and a key per chunk (about 40 bytes
while searching), and 16 bytes per pair found."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
# Rows of one hash bucket compared at once: bounds memory when thousands of hashes share a chunk.
HASH_BLOCK_ROWS = 512


def unit_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows that have a bottleneck (no NaN: the image decoded and its features are finite), and their vectors
    scaled to unit length, so that an inner product is the cosine similarity."""
    rows = np.flatnonzero(~np.isnan(vectors).any(axis=1))
    unit = vectors[rows].astype(np.float32)
    return rows, unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Neighbours:
    """Rows with a bottleneck, their unit-length vectors, and each one's nearest rows (positions in ``rows``) with
    their cosine similarities, most similar first."""

    rows: np.ndarray
    unit: np.ndarray
    similarities: np.ndarray
    indices: np.ndarray

    @classmethod
    def of(cls, vectors: np.ndarray, count: int) -> Neighbours:
        rows, unit = unit_rows(vectors)
        if not len(rows):  # no image has a bottleneck: nothing to search
            return cls(rows, unit, np.empty((0, 0), np.float32), np.empty((0, 0), np.int64))
        return cls(rows, unit, *nearest(unit, count))

    def first(self, count: int) -> Neighbours:
        """The ``count`` nearest only (a search for more holds those first)."""
        return Neighbours(self.rows, self.unit, self.similarities[:, :count], self.indices[:, :count])


def nearest(unit: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities and row indices of each row's ``count`` nearest rows, most similar first; a row is its own
    nearest (or shares first place with an identical copy). Exact up to ``EXACT_LIMIT`` rows; above it approximate
    neighbours with exact similarities (on 100,000 vectors derived from flowers-dev, every near-duplicate pair the
    exact search finds: benchmarks/audit_scale.py)."""
    import faiss  # only audits with bottlenecks need it

    count = min(count, len(unit))
    if len(unit) <= EXACT_LIMIT or unit.shape[1] <= REDUCED_DIMENSIONS:
        index = faiss.IndexFlatIP(unit.shape[1])
        index.add(unit)
        return index.search(unit, count)
    return _reranked(unit, _graph_candidates(unit, count + EXTRA_CANDIDATES), count)


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


def _reranked(unit: np.ndarray, candidates: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` best of each row's candidates by exact inner product, the row itself first."""
    own = np.arange(len(unit))[:, None]
    candidates = np.concatenate([own, np.where(candidates == own, -1, candidates)], axis=1)
    similarities = np.empty(candidates.shape, np.float32)
    for start in range(0, len(unit), RERANK_ROWS):
        block = candidates[start : start + RERANK_ROWS]
        similarities[start : start + RERANK_ROWS] = np.einsum(
            "nd,nkd->nk", unit[start : start + RERANK_ROWS], unit[np.maximum(block, 0)]
        )
    similarities[candidates < 0] = -np.inf
    order = np.argsort(-similarities, axis=1, kind="stable")[:, :count]
    return np.take_along_axis(similarities, order, axis=1), np.take_along_axis(candidates, order, axis=1)


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
        for members in _buckets(key):
            found += [_close_pairs(codes, keys[:chunk], rows, members, max_bits) for rows in _blocks(members)]
    return np.concatenate(found)


def _buckets(key: np.ndarray) -> list[np.ndarray]:
    """Rows sharing each value of ``key``, for values held by two rows or more."""
    order = np.argsort(key, kind="stable")
    starts = np.flatnonzero(np.r_[True, key[order][1:] != key[order][:-1]])
    ends = np.r_[starts[1:], len(order)]
    return [order[start:end] for start, end in zip(starts, ends, strict=True) if end - start > 1]


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
