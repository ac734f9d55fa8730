"""Small array helpers shared by every stage."""

from __future__ import annotations

import numpy as np


def unit_rows(array, dtype=np.float32) -> np.ndarray:
    """``array`` scaled to unit L2 norm along its last axis (all-zero rows stay zero)."""
    array = np.asarray(array, dtype=dtype)
    return array / np.linalg.norm(array, axis=-1, keepdims=True).clip(min=1e-12)


BLOCK_BYTES = 256 << 20  # a (rows, columns) float32 block of similarities stays within this
# A block that is written and at once read back (a product's result reduced row by row) stays within
# this, so that it is read from cache rather than memory (this CPU's L3 is 32 MiB; GPUs' L2 40-60 MiB).
CACHE_BLOCK_BYTES = 8 << 20


def rows_per_block(n_columns: int, most: int, budget: int = BLOCK_BYTES, itemsize: int = 4) -> int:
    """Rows of a block with ``n_columns`` similarities of ``itemsize`` bytes each (float32's by default):
    ``most``, fewer beyond ``budget`` bytes."""
    return max(1, min(most, budget // (itemsize * n_columns)))


def sample_rows(n: int, max_rows: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_rows`` of ``n`` rows, a seeded uniform sample (all rows when n <= max_rows)."""
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


def round_robin(labels, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Up to ``n`` indices of ``labels`` taking the classes in turn: every class's first item, then every
    class's second... Items are ranked within their class in index order, or in a random order drawn from
    ``rng``; within one round the classes come in label order, or in a random order from ``rng``."""
    labels = np.asarray(labels)
    rank = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank[members if rng is None else rng.permutation(members)] = np.arange(len(members))
    within_round = labels if rng is None else rng.random(len(labels))
    return np.lexsort((within_round, rank))[:n]
