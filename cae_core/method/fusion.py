"""Fusing the image embedding with its noun and caption correspondences (CAE step 5).

Stated by CAE: prototype p = mean of the modalities; each image weighs modality k by
softmax_k(cos(modality_k, p) / gamma), gamma = 0.01 (``weighting="paper"``); k-means on the fused
features. The paper does not say how the weighted modalities are combined.

Inferred here, each for a stated reason (measurements in the README, "What was inferred"):

- **Centring** (``centre=True``): every modality's mean over the images is removed and rows are
  re-normalised before weighting. CLIP's modality gap gives any two image embeddings a cosine of
  ~0.6 and any two correspondences ~0.9; uncentred, the fused similarity of two images depends on
  these baselines more than on the images.
- **Weights that measure trust** (``weighting="agreement"``, the default). A text view is built
  *from* the image by transport, so the only label-free evidence that it describes the image is
  that it agrees with the image about which images are alike (SAC, seed 003: "intra-modal and
  inter-modal neighborhood structures"). Each image i weighs the image 1 and text view t by its
  trust (``trust``): the share of its k nearest neighbours in view t that are also among its k
  nearest in the image view, corrected for chance (k = 10, the graph size used for K's estimate and
  scikit-learn's SpectralClustering default), averaged over the image and its k nearest images,
  and divided by the image view's split-half agreement (the ceiling: two halves of the image
  embedding agree only so far with each other), capped at 1. When a bank does not cover the images
  its views' neighbourhoods are near chance and the fusion falls back towards the image alone; when
  they agree as well as the image agrees with itself it is equal weighting. The set-level trust is
  the mean of the per-image values, so one rule serves both. The paper's softmax over prototype cosines measures
  closeness to the mean of the views, which is a property of the modality gap and of how many views
  point the same way, not of whether a view is right.
- The weights are computed on the same (centred) vectors they are applied to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch

from ..arrays import CACHE_BLOCK_BYTES, rows_per_block, sample_rows, unit_rows
from ..device import as_tensor, resolve_device
from ..errors import CaeError, is_temperature
from ..nearest import low_precision_copy, nearest

GAMMA = 0.01  # stated by CAE: temperature of the softmax over modalities
NEIGHBOURS = 10  # k of the neighbourhoods compared by the agreement weighting (see the module docstring)
REFERENCE_ROWS = 10_000  # neighbours are sought among at most this many images, so cost stays O(N)
Weighting = Literal["agreement", "paper", "equal"]
Combine = Literal["concat", "sum"]
WEIGHTINGS: tuple[str, ...] = get_args(Weighting)
COMBINES: tuple[str, ...] = get_args(Combine)


@dataclass
class Fusion:
    """Per-image fusion of m modalities (image first).

    ``weights`` (N, m) rows sum to one; ``features`` (N, m * d) for concat or (N, d) for sum;
    ``prototype_cosine`` (N, m) each modality's cosine to the image's prototype (the paper's
    statistic) and ``agreement`` (N, m) each view's trust (``trust``: its neighbourhood agreement
    with the image view, local and relative to the image's split-half agreement ``split_half``; 1 for
    the image and under other weightings), both on the vectors the weights act on; ``offset`` (m,) the mean
    prototype cosine over the images (the modality gap's share); ``weighting``, ``centred`` and
    ``combine`` say how the features were made.
    """

    modalities: tuple[str, ...]
    weights: np.ndarray
    features: np.ndarray
    prototype_cosine: np.ndarray
    agreement: np.ndarray
    offset: np.ndarray
    weighting: str
    centred: bool
    combine: str = "concat"
    split_half: float = float("nan")

    @property
    def deviation(self) -> np.ndarray:
        """(N, m) each image's cosine to the prototype minus its modality's offset."""
        return self.prototype_cosine - self.offset

    @property
    def gap_dominated(self) -> np.ndarray:
        """(N,) True where the offsets between modalities exceed the image's own spread of deviations:
        there, the paper's softmax over prototype cosines is decided by the modality gap."""
        return np.ptp(self.offset) > np.ptp(self.deviation, axis=1)


def check_fusion_options(combine: str, gamma: float, weighting: str | None = None) -> None:
    """Raise ``CaeError`` for an unknown combination or weighting (when given), or a non-positive gamma."""
    if weighting is not None and weighting not in WEIGHTINGS:
        raise CaeError(f"unknown fusion weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    if combine not in COMBINES:
        raise CaeError(f"unknown fusion combination {combine!r}; choose one of {', '.join(COMBINES)}")
    if not is_temperature(gamma):
        raise CaeError(f"the fusion temperature gamma must be positive and finite (at least 6e-39: 2 / gamma must fit a float32), got {gamma!r}")


def _own_positions(reference_index: torch.Tensor, start: int, n_rows: int) -> torch.Tensor:
    """(n_rows,) the position in the (sorted) reference set of each of the rows start..start + n_rows, -1 for
    a row not in it: where each row would find itself."""
    rows = torch.arange(start, start + n_rows, device=reference_index.device)
    position = torch.searchsorted(reference_index, rows).clamp_(max=len(reference_index) - 1)
    return torch.where(reference_index[position] == rows, position, -1)


def _agreement_and_neighbours(anchor: np.ndarray, views: list[np.ndarray], k: int, reference_rows: int, seed: int,
                              device: str | torch.device, block_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, len(views)) chance-corrected agreement (``neighbour_agreement``) and (N, k) each image's k nearest
    images in ``anchor`` (row indices)."""
    n = len(anchor)
    if not 1 <= k < n:
        raise CaeError(f"neighbourhood agreement needs 1 <= k < N images, got k = {k}, N = {n}")
    dev = resolve_device(device)
    chosen = sample_rows(n, reference_rows, seed)
    reference_index = torch.as_tensor(chosen, device=dev)
    candidates = len(chosen) - 1 if len(chosen) == n else len(chosen)
    chance = k / max(candidates, k)
    spaces = [as_tensor(space, dev) for space in (anchor, *views)]
    references = [space[reference_index] for space in spaces]
    # two passes where the references are a sample, the search growing with N (at N = 40,000 planted: 16.9
    # against 29.0 CPU s); among the few thousand references of the real features one float32 pass is faster
    # (caltech101: 1.2 against 1.8 CPU s)
    lows = [low_precision_copy(reference) if n > reference_rows else None for reference in references]
    # cache-sized blocks: topk reads the similarities straight after the product wrote them; bfloat16 ones
    # hold twice the rows (at N = 40,000: 13.5 against 15.9 CPU s)
    block_rows = rows_per_block(len(chosen), block_rows, CACHE_BLOCK_BYTES, 2 if lows[0] is not None else 4)
    agreement = np.empty((n, len(views)), dtype=np.float32)
    anchor_neighbours = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, block_rows):
        rows = slice(start, start + block_rows)
        own = _own_positions(reference_index, start, len(spaces[0][rows]))
        near = [nearest(space[rows], reference, k, own, low)[1] for space, reference, low in zip(spaces, references, lows)]
        anchor_neighbours[rows] = reference_index[near[0]].cpu().numpy()
        for column, view_near in enumerate(near[1:]):
            shared = (near[0][:, :, None] == view_near[:, None, :]).any(dim=2).sum(dim=1)
            agreement[rows, column] = ((shared / k - chance) / (1 - chance)).clamp_(min=0).cpu().numpy()
    return agreement, anchor_neighbours


def neighbour_agreement(anchor: np.ndarray, views: list[np.ndarray], k: int = NEIGHBOURS, *,
                        reference_rows: int = REFERENCE_ROWS, seed: int = 0,
                        device: str | torch.device = "auto", block_rows: int = 4096) -> np.ndarray:
    """(N, len(views)) each image's chance-corrected share of its k nearest neighbours in a view that are
    also among its k nearest in ``anchor`` (all (N, d) unit rows; cosine neighbours, the image itself
    excluded). 0 is what unrelated neighbourhoods give on average (negative values are clipped), 1
    is the same neighbours. Neighbours are sought among at most ``reference_rows`` images (a seeded
    sample; all of them below that), so the cost grows as N * min(N, reference_rows).
    """
    return _agreement_and_neighbours(anchor, views, k, reference_rows, seed, device, block_rows)[0]


def split_half_agreement(anchor: np.ndarray, k: int = NEIGHBOURS, *, seed: int = 0,
                         reference_rows: int = REFERENCE_ROWS, device: str | torch.device = "auto") -> float:
    """The mean agreement between the neighbourhoods of two random halves of ``anchor``'s dimensions (each
    half re-normalised): how far the image view agrees with itself, the ceiling a second view can reach.

    A set-level mean, so it is taken over the images the neighbours are sought among (at most
    ``reference_rows``, the same seeded sample; all of them below that), not over every image."""
    order = np.random.default_rng(seed).permutation(anchor.shape[1])
    sample = sample_rows(len(anchor), reference_rows, seed)
    first, second = (unit_rows(anchor[sample][:, half]) for half in np.array_split(order, 2))
    return float(neighbour_agreement(first, [second], k, reference_rows=reference_rows, seed=seed,
                                     device=device).mean())


def trust(anchor: np.ndarray, views: list[np.ndarray], k: int = NEIGHBOURS, *, seed: int = 0,
          reference_rows: int = REFERENCE_ROWS, device: str | torch.device = "auto") -> tuple[np.ndarray, float]:
    """((N, len(views)) each view's trust for each image in [0, 1], the image view's split-half agreement).

    trust = min(1, local agreement / split-half agreement): the view's ``neighbour_agreement`` averaged
    over the image and its k nearest images (a bank covers regions of the image space, such as
    classes, rather than single images, and one image's k neighbours are a noisy estimate), divided by
    the agreement two halves of the image embedding reach with each other (classical test theory's
    split-half reliability: a second measurement cannot be expected to agree with the first more than
    the first agrees with itself).
    """
    agreement, neighbours = _agreement_and_neighbours(anchor, views, k, reference_rows, seed, device, 4096)
    local = (agreement + agreement[neighbours].sum(axis=1)) / (k + 1)
    ceiling = split_half_agreement(anchor, k, seed=seed, reference_rows=reference_rows, device=device)
    return np.minimum(1.0, local / max(ceiling, 1e-6)).astype(np.float32), ceiling


def fuse(modalities: dict[str, np.ndarray], weighting: Weighting = "agreement", *, gamma: float = GAMMA,
         combine: Combine = "concat", centre: bool = True, neighbours: int = NEIGHBOURS, seed: int = 0,
         device: str | torch.device = "auto") -> Fusion:
    """Fuse ``modalities`` (name -> (N, d) embeddings, image first) into one feature per image.

    ``centre``: subtract each modality's mean over the images (then re-normalise) first; the
    weights are computed on the vectors they weigh. ``weighting``: ``"agreement"`` (default) image 1,
    each text view its neighbourhood agreement with the image (``neighbour_agreement``), then rows
    scaled to sum to one; ``"paper"`` softmax_k(cos(m_k, p) / gamma), p the mean of the unit
    modalities, as CAE writes it; ``"equal"`` 1/m. ``combine``: ``"concat"`` concatenates the
    weighted unit modalities (equal weights on raw modalities give TAC's concatenation); ``"sum"``
    adds them and normalises.
    """
    check_fusion_options(combine, gamma, weighting)
    names = tuple(modalities)
    stacked = np.stack([unit_rows(modalities[name]) for name in names])
    # in place from here: (m, N, d) is the run's largest array (1.2 GB at N = 200,000)
    if centre:
        stacked -= stacked.mean(axis=1, keepdims=True)
        stacked /= np.linalg.norm(stacked, axis=-1, keepdims=True).clip(min=1e-12)
    prototype = unit_rows(stacked.mean(axis=0))
    cosine = np.einsum("mnd,nd->nm", stacked, prototype)
    agreement = np.ones(cosine.shape, dtype=np.float32)
    ceiling = float("nan")
    if len(names) > 1 and weighting == "agreement" and stacked.shape[1] > 2:
        # fewer images than neighbours: every other image is a neighbour (k = N - 1 would always agree)
        k = min(neighbours, stacked.shape[1] - 2)
        agreement[:, 1:], ceiling = trust(stacked[0], list(stacked[1:]), k, seed=seed, device=device)
    if weighting == "equal":
        weights = np.full(cosine.shape, 1 / len(names))
    elif weighting == "agreement":
        weights = agreement / agreement.sum(axis=1, keepdims=True)
    else:
        logits = cosine / gamma
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        weights /= weights.sum(axis=1, keepdims=True)
    stacked *= weights.T[:, :, None].astype(stacked.dtype)
    features = unit_rows(stacked.sum(axis=0)) if combine == "sum" else np.concatenate(list(stacked), axis=1)
    return Fusion(names, weights.astype(np.float32), features.astype(np.float32, copy=False),
                  cosine.astype(np.float32), agreement, cosine.mean(axis=0).astype(np.float32), weighting, centre,
                  combine, ceiling)
