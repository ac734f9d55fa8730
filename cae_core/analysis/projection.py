"""2-D UMAP maps of embeddings, optionally with texts fitted in the same map.

Points (images) are subsampled to ``max_points`` for the fit (all of them when it is at least N);
extra arrays (the selected texts) are kept whole and fitted jointly with the points, so their
positions are comparable with the images' (a text near an image cluster is near it in the
embedding, not by a separate fit). Fits are cached on disk through ``cae_core.inputs.cache``.

Drawing is separate from fitting: ``thin_by_density`` picks the points to draw so that a map of
50,000 images stays responsive while sparse regions (outliers, small clusters) keep every point.

``remove_modality_gap``: CLIP puts images and texts in two cones (image–text cosine ~0.2 against
~0.6 within each), so a joint map draws two islands. Measured on the real features (README): with
the raw vectors no selected text has an image among its 10 nearest neighbours on stl10-vitb16 or
food101-vitb32; with each modality's mean removed, 6-8% (stl10) and 60-69% (food101) do.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np

from ..inputs.cache import cached_array
from ..arrays import sample_rows, unit_rows
from ..errors import CaeError

PCA_DIMENSIONS = 50  # UMAP's usual pre-reduction: the neighbour search is the cost, and 50 dims keep it cheap
N_EPOCHS = 200  # UMAP uses 200 above 10,000 points and 500 below; 200 gives the same picture here in half the time
MIN_POINTS = 5
PROJECTION_VERSION = 1  # bump when the recipe changes so cached maps are not reused


def remove_modality_gap(*modalities: np.ndarray) -> list[np.ndarray]:
    """Each array (n_k, d) minus its own mean row, rows re-normalised (CAE's fusion centres likewise)."""
    return [unit_rows(np.asarray(array) - np.asarray(array).mean(axis=0)) if len(array) else np.asarray(array)
            for array in modalities]


def thin_by_density(xy: np.ndarray, max_points: int, seed: int = 0, cells: int = 128) -> np.ndarray:
    """Sorted indices of at most ``max_points`` rows of the 2-D map ``xy`` (n, 2), dense regions thinned.

    The map is cut into ``cells`` x ``cells`` squares and every square keeps at most c of its points
    (c the largest cap that fits ``max_points``; a seeded random choice within a square), so a square
    with few points keeps them all. Every row when n <= max_points.
    """
    n = len(xy)
    if n <= max_points:
        return np.arange(n)
    if max_points < 1:
        raise CaeError(f"max_points must be positive, got {max_points}")
    low, high = xy.min(axis=0), xy.max(axis=0)
    cell = np.floor((xy - low) / np.maximum(high - low, 1e-12) * (cells - 1e-9)).astype(np.int64)
    square = cell[:, 0] * cells + cell[:, 1]
    # a random order, then each point's rank within its square: keeping rank < c keeps c per square
    order = np.random.default_rng(seed).permutation(n)
    by_square = order[np.argsort(square[order], kind="stable")]
    starts = np.searchsorted(square[by_square], square[by_square], side="left")
    rank = np.empty(n, dtype=np.int64)
    rank[by_square] = np.arange(n) - starts
    counts = np.bincount(square, minlength=cells * cells)
    # total kept with cap c is sum(min(count, c)): the largest c within budget, by bisection
    low_cap, high_cap = 0, int(counts.max())
    while low_cap < high_cap:
        middle = (low_cap + high_cap + 1) // 2
        if np.minimum(counts, middle).sum() <= max_points:
            low_cap = middle
        else:
            high_cap = middle - 1
    return np.flatnonzero(rank < max(low_cap, 1))[:max_points]


def _fit(stacked: np.ndarray, n_neighbors: int, min_dist: float, seed: int) -> np.ndarray:
    # imported here: umap pulls in numba, whose import and JIT compile take seconds
    import umap
    from sklearn.decomposition import PCA

    if stacked.shape[1] > PCA_DIMENSIONS and len(stacked) > PCA_DIMENSIONS:
        stacked = PCA(PCA_DIMENSIONS, random_state=seed).fit_transform(stacked)
    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, n_epochs=N_EPOCHS,
                        random_state=seed, n_jobs=1)
    with warnings.catch_warnings():
        # umap warns that a seed forces one thread, and about small-graph spectral fallbacks
        warnings.simplefilter("ignore")
        return np.asarray(reducer.fit_transform(stacked), dtype=np.float32)


def project(*arrays: np.ndarray, n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0,
            max_points: int = 3000) -> tuple[list[np.ndarray], np.ndarray]:
    """UMAP of ``arrays[0]`` (N, d), subsampled to ``max_points`` rows, jointly with ``arrays[1:]``.

    Rows are L2-normalised first (Euclidean on unit rows ranks neighbours as the cosine does).
    Returns ``(coordinates, index)``: ``coordinates[k]`` the (rows, 2) map of ``arrays[k]``
    (``arrays[0]`` restricted to ``index``), and ``index`` the rows of ``arrays[0]`` kept, sorted.
    Same inputs and seed give the same map.
    """
    if not arrays:
        raise CaeError("nothing to project")
    dims = {np.asarray(array).shape[1] for array in arrays if len(array)}
    if len(dims) > 1:
        raise CaeError(f"arrays drawn in one map must share their dimension, got {sorted(dims)}")
    if max_points < MIN_POINTS:
        raise CaeError(f"a map needs at least {MIN_POINTS} points, max_points is {max_points}")
    index = sample_rows(len(arrays[0]), max_points, seed)
    parts = [unit_rows(np.asarray(arrays[0])[index])] + [unit_rows(array) for array in arrays[1:] if len(array)]
    stacked = np.concatenate(parts)
    if len(stacked) < MIN_POINTS:
        raise CaeError(f"a map needs at least {MIN_POINTS} points, got {len(stacked)}")
    neighbours = int(min(n_neighbors, len(stacked) - 1))

    key = {"kind": "umap", "version": PROJECTION_VERSION, "points": hashlib.sha256(stacked.tobytes()).hexdigest(),
           "shape": list(stacked.shape), "n_neighbors": neighbours, "min_dist": float(min_dist), "seed": int(seed)}
    joint = cached_array(key, lambda: _fit(stacked, neighbours, min_dist, seed), namespace="projections",
                         description=f"UMAP of {len(stacked)} points")
    bounds = np.cumsum([0] + [len(array) for array in arrays])
    bounds[1:] -= len(arrays[0]) - len(index)
    return [joint[bounds[k]:bounds[k + 1]] for k in range(len(arrays))], index

