"""Small array helpers shared by every stage."""

from __future__ import annotations

import numpy as np


def unit_rows(array, dtype=np.float32) -> np.ndarray:
    """``array`` scaled to unit L2 norm along its last axis (all-zero rows stay zero)."""
    array = np.asarray(array, dtype=dtype)
    return array / np.linalg.norm(array, axis=-1, keepdims=True).clip(min=1e-12)


BLOCK_BYTES = 256 << 20  # a (rows, columns) float32 block of similarities stays within this


def rows_per_block(n_columns: int, most: int) -> int:
    """Rows of a block with ``n_columns`` float32 similarities each: ``most``, fewer beyond ``BLOCK_BYTES``."""
    return max(1, min(most, BLOCK_BYTES // (4 * n_columns)))


def sample_rows(n: int, max_rows: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_rows`` of ``n`` rows, a seeded uniform sample (all rows when n <= max_rows)."""
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))
