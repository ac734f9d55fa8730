"""Choosing K when it is not given: a criterion scored over a range of K on the features a method clusters.

CAE, like every training-free method it compares with, takes K as given (the paper lists this as a
limitation). Two label-free criteria, both standard:

- ``eigengap`` (default): the normalised Laplacian of the symmetric cosine 10-nearest-neighbour graph
  (10: scikit-learn's SpectralClustering default); K is where the gap between consecutive eigenvalues
  is largest (von Luxburg 2007, "A tutorial on spectral clustering", section 8.3).
- ``silhouette``: spherical k-means at each K, then the mean cosine silhouette (Rousseeuw 1987).

Measured on the real CLIP features (README; true K = 10 on both): eigengap on ``cae``'s fused
features finds 10 on stl10-vitb16 and food101-vitb32 for seeds 0-2 (8-11 with 5-20 neighbours);
silhouette finds 6 on stl10 (it favours the coarse animals / vehicles split) and 10 on food101.
It is also far cheaper: no k-means per K (0.13 s against 7.5 s on food101-vitb32). Silhouette stays available, and per cluster it is
the label-free quality the explorer shows.
Rows beyond ``max_rows`` are sampled (fixed seed): both criteria cost O(rows²).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import sample_rows, unit_rows
from ..errors import CaeError
from ..inputs.bundle import FeaturesBundle
from ..progress import Progress
from .clustering import spherical_kmeans
from .methods import CaeConfig
from .run import represent, space_images_for
from .semantic_space import default_n_centres

CLUSTER_COUNT_CRITERIA = ("eigengap", "silhouette")
DEFAULT_RANGE = (2, 30)
MAX_ROWS = 5000  # silhouette and the graph are O(rows²); 5,000 rows keep one K within a second or so
GRAPH_NEIGHBOURS = 10
DENSE_ROWS = 1000  # a graph component this small gets the dense eigensolver (about a second at most)


@dataclass
class ClusterCountEstimate:
    """``ks`` (R,) the K tried; ``scores`` (R,) the criterion at each (higher is better); ``best`` the K
    chosen; ``criterion`` its name; ``n_rows`` how many rows were scored (a sample when fewer than N)."""

    ks: np.ndarray
    scores: np.ndarray
    best: int
    criterion: str
    n_rows: int


def check_range(k_range: tuple[int, int], n_rows: int) -> tuple[int, int]:
    """``(low, high)`` validated against the number of images (at least 2 clusters, fewer than N)."""
    low, high = (int(value) for value in k_range)
    if low < 2 or high < low:
        raise CaeError(f"the range of K must be 2 <= low <= high, got {low}..{high}")
    if high >= n_rows:
        raise CaeError(f"cannot try {high} clusters on {n_rows} images; lower the top of the range")
    return low, high


def silhouette_scores(features: np.ndarray, ks: np.ndarray, *, n_init: int | str = "auto", seed: int = 0,
                      device: str = "auto") -> np.ndarray:
    """Mean cosine silhouette of spherical k-means into each K of ``ks``, on ``features`` (n, D)."""
    from sklearn.metrics import silhouette_score

    scores = []
    for k in ks:
        labels = spherical_kmeans(features, int(k), n_init=n_init, seed=seed, device=device).labels
        scores.append(silhouette_score(features, labels, metric="cosine") if len(np.unique(labels)) > 1 else -1.0)
    return np.asarray(scores, dtype=np.float64)


def eigengap_scores(features: np.ndarray, ks: np.ndarray, neighbours: int = GRAPH_NEIGHBOURS) -> np.ndarray:
    """Gap λ_K − λ_{K−1} of the normalised Laplacian of the symmetric cosine kNN graph of ``features``
    (n, D), eigenvalues ascending from λ_0 = 0: K near-zero eigenvalues mean K weakly linked groups.

    The graph is sparse, so above ``DENSE_ROWS`` rows the smallest Laplacian eigenvalues come from
    Lanczos (``eigsh``) on the largest of the normalised affinity (λ = 1 − μ), per connected
    component: at 5,000 rows the dense solver took 79 s here, Lanczos under a second.
    """
    from scipy.linalg import eigvalsh
    from scipy.sparse import csr_matrix, diags
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import eigsh

    x = unit_rows(features)
    n, k = len(x), min(neighbours, len(x) - 1)
    nearest, values = [], []
    for start in range(0, n, 2048):  # kNN by blocks of rows: memory O(2048 * n)
        similarity = x[start:start + 2048] @ x.T
        similarity[np.arange(len(similarity)), np.arange(start, start + len(similarity))] = -np.inf
        found = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        nearest.append(found)
        values.append(np.take_along_axis(similarity, found, axis=1))
    rows = np.repeat(np.arange(n), k)
    affinity = csr_matrix((np.clip(np.concatenate(values).ravel(), 0, None).astype(np.float64),
                           (rows, np.concatenate(nearest).ravel())), shape=(n, n))
    affinity = affinity.maximum(affinity.T)
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    scale = diags(np.where(degree > 0, 1 / np.sqrt(np.where(degree > 0, degree, 1)), 0))
    normalised = scale @ affinity @ scale
    top = int(ks.max())
    # the spectrum of a graph is the union of its connected components' spectra; per component the
    # eigenvalue 0 is simple, which Lanczos (eigsh) finds reliably (a repeated one it may find once)
    n_parts, part = connected_components(affinity, directed=False)
    found = []
    for component in range(n_parts):
        members = np.flatnonzero(part == component)
        block = normalised[members][:, members]
        wanted = min(top + 1, len(members))
        if len(members) <= DENSE_ROWS:
            found.append(eigvalsh(np.eye(len(members)) - block.toarray())[:wanted])
        else:
            start_vector = np.random.default_rng(0).uniform(0.5, 1.5, len(members))  # reproducible
            found.append(1 - eigsh(block, k=wanted, which="LA", v0=start_vector, return_eigenvectors=False))
    eigenvalues = np.sort(np.concatenate(found))[: top + 1]
    return np.array([eigenvalues[int(kk)] - eigenvalues[int(kk) - 1] for kk in ks])


def estimate_n_clusters(features: np.ndarray, k_range: tuple[int, int] = DEFAULT_RANGE, *,
                        criterion: str = "eigengap", n_init: int | str = "auto", seed: int = 0, device: str = "auto",
                        max_rows: int = MAX_ROWS) -> ClusterCountEstimate:
    """Score every K in ``k_range`` (inclusive) on ``features`` (N, D) and pick the best.

    ``features`` are what the method clusters (``run.represent``); rows are scored by cosine. Above
    ``max_rows`` rows a seeded sample is scored. Same inputs and seed, same estimate.
    """
    if criterion not in CLUSTER_COUNT_CRITERIA:
        raise CaeError(f"unknown criterion {criterion!r}; choose one of {', '.join(CLUSTER_COUNT_CRITERIA)}")
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise CaeError(f"features must be 2-D, got shape {features.shape}")
    low, high = check_range(k_range, len(features))
    if max_rows <= high:
        raise CaeError(f"max_rows ({max_rows}) must exceed the largest K tried ({high})")
    rows = features[sample_rows(len(features), max_rows, seed)]
    ks = np.arange(low, high + 1)
    if criterion == "silhouette":
        scores = silhouette_scores(rows, ks, n_init=n_init, seed=seed, device=device)
    else:
        scores = eigengap_scores(rows, ks)
    # ties go to the smaller K (fewer clusters explain the data as well)
    best = int(ks[int(np.argmax(scores))])
    return ClusterCountEstimate(ks, scores, best, criterion, len(rows))


def choose_n_clusters(bundle: FeaturesBundle, method: str = "cae", k_range: tuple[int, int] = DEFAULT_RANGE, *,
                      criterion: str = "eigengap", config: CaeConfig | None = None, seed: int = 0,
                      progress: Progress | None = None) -> tuple[ClusterCountEstimate, int]:
    """Estimate K for ``method`` on ``bundle``: (the estimate, the semantic-space size it used).

    The features are made once, before K is known, with the semantic space sized for the top of the
    range (the 3K floor of ``default_n_centres`` then leaves no candidate cluster without texts).
    Clustering then runs as it would with K given: where N/300 < K that space is smaller (on the
    200-image stl10 bundle, 30 centres instead of 90; clustering with 90 cost 0.19 ACC there).
    """
    config = config or CaeConfig()
    _, high = check_range(k_range, bundle.n_images)
    n_centres = config.n_centres or default_n_centres(len(space_images_for(bundle, config)), high,
                                                      config.train_size)
    made = represent(bundle, method, n_centres, config=config, seed=seed, progress=progress)
    estimate = estimate_n_clusters(made.features, k_range, criterion=criterion, n_init=config.n_init, seed=seed,
                                   device=config.device)
    return estimate, n_centres
