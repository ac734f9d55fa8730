"""Fusing the image embedding with its noun and caption correspondences.

CAE (stated): prototype p = mean of the modalities; each image weighs modality k by
softmax_k(cos(modality_k, p) / gamma), gamma = 0.01; k-means on the fused features.

Inferred here, because CLIP has a modality gap (Liang et al., 2022): an image's cosine to the
prototype sits ~0.3 below its text correspondences' on every image (0.61-0.64 against 0.90-0.92 on
the real features), while one image differs from another by only 0.002-0.02. Divided by gamma, that
constant decides the weights as written (image weight ~1e-10 everywhere), which is not the
"sample-level adaptation" the paper motivates. The default ``"adaptive"`` weighting therefore
subtracts each modality's mean cosine over the images (its offset) before the softmax, so gamma acts
on each image's own deviation; and it centres every modality (its mean over the images removed,
rows re-normalised) before combining, because the modalities' baseline cosines differ (any two
image embeddings ~0.64, any two correspondences ~0.9), and per-image weights over uncentred blocks
make the fused similarity depend on the weights more than on the images. ``"paper"`` keeps the
formula as written on the raw modalities, to show the difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from ..arrays import unit_rows
from ..errors import CaeError, is_temperature

GAMMA = 0.01  # stated by CAE: temperature of the softmax over modalities
Weighting = Literal["adaptive", "paper", "equal"]
Combine = Literal["concat", "sum"]
WEIGHTINGS: tuple[str, ...] = get_args(Weighting)
COMBINES: tuple[str, ...] = get_args(Combine)


@dataclass
class Fusion:
    """Per-image fusion of m modalities (image first).

    ``weights`` (N, m) rows sum to one; ``features`` (N, m * d) for concat or (N, d) for sum;
    ``prototype_cosine`` (N, m) each modality's cosine to the image's prototype, before any offset
    is removed; ``offset`` (m,) its mean over the images (the modality gap's share);
    ``weighting`` and ``centred`` say how the weights and features were made.
    """

    modalities: tuple[str, ...]
    weights: np.ndarray
    features: np.ndarray
    prototype_cosine: np.ndarray
    offset: np.ndarray
    weighting: str
    centred: bool

    @property
    def deviation(self) -> np.ndarray:
        """(N, m) each image's cosine to the prototype minus its modality's offset."""
        return self.prototype_cosine - self.offset

    @property
    def gap_dominated(self) -> np.ndarray:
        """(N,) True where the offsets between modalities exceed the image's own spread of deviations:
        there, weights from the raw cosines (the paper's formula) are decided by the modality gap."""
        return np.ptp(self.offset) > np.ptp(self.deviation, axis=1)


def check_fusion_options(combine: str, gamma: float, weighting: str | None = None) -> None:
    """Raise ``CaeError`` for an unknown combination or weighting (when given), or a non-positive gamma."""
    if weighting is not None and weighting not in WEIGHTINGS:
        raise CaeError(f"unknown fusion weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    if combine not in COMBINES:
        raise CaeError(f"unknown fusion combination {combine!r}; choose one of {', '.join(COMBINES)}")
    if not is_temperature(gamma):
        raise CaeError(f"the fusion temperature gamma must be positive and finite (at least 6e-39: 2 / gamma must fit a float32), got {gamma!r}")


def fuse(modalities: dict[str, np.ndarray], weighting: Weighting = "adaptive", *, gamma: float = GAMMA,
         combine: Combine = "concat", centre: bool = True) -> Fusion:
    """Fuse ``modalities`` (name -> (N, d) embeddings, image first) into one feature per image.

    ``weighting``: ``"adaptive"`` softmax((cos(m_k, p) - mean_i cos(m_k, p)) / gamma) (gap-free,
    the default), ``"paper"`` softmax(cos(m_k, p) / gamma) as written, ``"equal"`` 1/m.
    ``centre``: subtract each modality's mean over the images (then re-normalise) before combining.
    ``combine``: ``"concat"`` concatenates the weighted unit modalities (equal weights on raw
    modalities give TAC's concatenation); ``"sum"`` adds them and normalises.
    """
    check_fusion_options(combine, gamma, weighting)
    names = tuple(modalities)
    stacked = np.stack([unit_rows(modalities[name]) for name in names])
    prototype = unit_rows(stacked.mean(axis=0))
    cosine = np.einsum("mnd,nd->nm", stacked, prototype)
    offset = cosine.mean(axis=0)
    if weighting == "equal":
        weights = np.full(cosine.shape, 1 / len(names))
    else:
        logits = (cosine - offset if weighting == "adaptive" else cosine) / gamma
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        weights /= weights.sum(axis=1, keepdims=True)
    # in place from here: (m, N, d) is the run's largest array (1.2 GB at N = 200,000), and each
    # copy of it raised the peak (6.8 -> 4.5 GiB fusing 3 x 200,000 x 512, inputs included; same numbers)
    if centre:
        stacked -= stacked.mean(axis=1, keepdims=True)
        stacked /= np.linalg.norm(stacked, axis=-1, keepdims=True).clip(min=1e-12)
    stacked *= weights.T[:, :, None]
    features = unit_rows(stacked.sum(axis=0)) if combine == "sum" else np.concatenate(list(stacked), axis=1)
    return Fusion(names, weights.astype(np.float32), features.astype(np.float32, copy=False),
                  cosine.astype(np.float32), offset.astype(np.float32), weighting, centre)
