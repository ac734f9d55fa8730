"""Fusing the image embedding with its noun and caption correspondences."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bundle import unit_rows
from .errors import CaeError

GAMMA = 0.01  # stated by CAE: temperature of the softmax over modalities
FUSION_MODES = ("concat", "sum")


@dataclass
class Fusion:
    """``weights`` (N, m) per-image weight of each modality (rows sum to one); ``modalities`` their
    names in column order (image first); ``features`` (N, m * d) for concat or (N, d) for sum."""

    modalities: tuple[str, ...]
    weights: np.ndarray
    features: np.ndarray


def _combine(stacked: np.ndarray, weights: np.ndarray, mode: str) -> np.ndarray:
    """``stacked`` (m, N, d) unit rows, ``weights`` (N, m) → fused features."""
    if mode not in FUSION_MODES:
        raise CaeError(f"unknown fusion mode {mode!r}; choose one of {', '.join(FUSION_MODES)}")
    weighted = stacked * weights.T[:, :, None]
    if mode == "sum":
        return unit_rows(weighted.sum(axis=0))
    return np.concatenate(list(weighted), axis=1)


def adaptive_fusion(modalities: dict[str, np.ndarray], gamma: float = GAMMA, mode: str = "concat") -> Fusion:
    """CAE's adaptive fusion.

    ``modalities`` maps a name to (N, d) embeddings (image first). The prototype is their mean,
    p = (x + x_u + x_v) / m; each image weighs modality k by softmax_k(cos(modality_k, p) / gamma).
    ``mode="concat"`` concatenates the weighted unit modalities (equal weights give TAC's
    concatenation); ``"sum"`` adds them.
    """
    names = tuple(modalities)
    stacked = np.stack([unit_rows(modalities[name]) for name in names])
    prototype = unit_rows(stacked.mean(axis=0))
    logits = np.einsum("mnd,nd->nm", stacked, prototype) / gamma
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    weights /= weights.sum(axis=1, keepdims=True)
    return Fusion(names, weights.astype(np.float32), _combine(stacked, weights, mode).astype(np.float32))


def equal_fusion(modalities: dict[str, np.ndarray], mode: str = "concat") -> Fusion:
    """Plain fusion with equal weights (the ``cae-concat`` ablation and TAC's concatenation)."""
    names = tuple(modalities)
    stacked = np.stack([unit_rows(modalities[name]) for name in names])
    weights = np.full((stacked.shape[1], len(names)), 1 / len(names), dtype=np.float32)
    return Fusion(names, weights, _combine(stacked, weights, mode).astype(np.float32))
