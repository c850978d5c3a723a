"""Nearest neighbours of bottlenecks, for the checks that compare photos by their features: an exact inner-product
index (faiss) on unit-length vectors, so that no all-pairs matrix is ever built. Memory per image: its vector (4 bytes
a dimension, 5 KB at 1280) and the neighbours asked for (12 bytes each)."""

from __future__ import annotations

import numpy as np


def unit_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows that have a bottleneck (no NaN: the image decoded and its features are finite), and their vectors
    scaled to unit length, so that an inner product is the cosine similarity."""
    rows = np.flatnonzero(~np.isnan(vectors).any(axis=1))
    unit = vectors[rows].astype(np.float32)
    return rows, unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)


def nearest(unit: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities and row indices of each row's ``count`` nearest rows, most similar first; a row is its own
    nearest (or shares first place with an identical copy)."""
    import faiss  # only audits with bottlenecks need it

    index = faiss.IndexFlatIP(unit.shape[1])
    index.add(unit)
    return index.search(unit, min(count, len(unit)))
