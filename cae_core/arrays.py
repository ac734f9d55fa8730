"""Small array helpers shared by every stage."""

from __future__ import annotations

import numpy as np


def unit_rows(array, dtype=np.float32) -> np.ndarray:
    """``array`` scaled to unit L2 norm along its last axis (all-zero rows stay zero)."""
    array = np.asarray(array, dtype=dtype)
    return array / np.linalg.norm(array, axis=-1, keepdims=True).clip(min=1e-12)
