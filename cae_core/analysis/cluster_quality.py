"""How good clusters are without labels, and how many there should be.

``cluster_quality``: per cluster, its size, mean cosine silhouette and cohesion (mean cosine of the
members to their centroid); what a user can read where a bundle has no labels. ``cluster_count_figure``
draws an ``estimate_n_clusters`` criterion against K, with the true count where it is known.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..arrays import sample_rows, unit_rows
from ..inputs.bundle import FeaturesBundle
from ..method.cluster_count import MAX_ROWS, ClusterCountEstimate


def true_cluster_count(bundle: FeaturesBundle) -> int | None:
    """How many ground-truth classes the labelled images have (None without labels)."""
    if not bundle.has_labels:
        return None
    return int(len(np.unique(bundle.labels[bundle.labels >= 0])))


def cluster_quality(features: np.ndarray, assignments: np.ndarray, *, seed: int = 0,
                    max_rows: int = MAX_ROWS) -> pd.DataFrame:
    """One row per cluster of ``assignments`` (N,) over ``features`` (N, D): ``cluster, size, silhouette,
    cohesion``, and a last row ``all`` for the whole set.

    Silhouette uses cosine distance on a seeded sample of ``max_rows`` rows when N is larger (it is
    O(rows²)); a cluster with no sampled member, or a single cluster overall, gets NaN.
    """
    from sklearn.metrics import silhouette_samples

    x = unit_rows(np.asarray(features), np.float64)
    assignments = np.asarray(assignments)
    clusters = np.unique(assignments)
    sample = sample_rows(len(x), max_rows, seed)
    silhouette = np.full(len(x), np.nan)
    if len(np.unique(assignments[sample])) > 1:
        silhouette[sample] = silhouette_samples(x[sample], assignments[sample], metric="cosine")
    rows = []
    cohesion_all = np.empty(len(x))
    for cluster in clusters:
        members = assignments == cluster
        centroid = unit_rows(x[members].mean(axis=0), np.float64)
        cohesion_all[members] = x[members] @ centroid
        scored = silhouette[members]
        rows.append({"cluster": str(cluster), "size": int(members.sum()),
                     "silhouette": float(np.nanmean(scored)) if np.isfinite(scored).any() else np.nan,
                     "cohesion": float(cohesion_all[members].mean())})
    rows.append({"cluster": "all", "size": len(x),
                 "silhouette": float(np.nanmean(silhouette)) if np.isfinite(silhouette).any() else np.nan,
                 "cohesion": float(cohesion_all.mean())})
    return pd.DataFrame(rows)


def cluster_count_figure(estimate: ClusterCountEstimate, true_k: int | None = None):
    """A plotly figure of the criterion against K, the chosen K marked, and the true K where known."""
    import plotly.graph_objects as go

    figure = go.Figure(go.Scatter(x=estimate.ks, y=estimate.scores, mode="lines+markers", name=estimate.criterion))
    figure.add_vline(x=estimate.best, line_dash="dash", line_color="firebrick",
                     annotation_text=f"estimated K = {estimate.best}", annotation_position="top right")
    if true_k is not None:
        figure.add_vline(x=true_k, line_dash="dot", line_color="seagreen",
                         annotation_text=f"true K = {true_k}", annotation_position="bottom right")
    figure.update_layout(template="plotly_white", xaxis_title="K", yaxis_title=estimate.criterion,
                         title=f"Choosing K: {estimate.criterion} on {estimate.n_rows:,} images",
                         margin=dict(l=0, r=0, t=40, b=0), height=320)
    return figure


def cluster_count_table(estimate: ClusterCountEstimate) -> pd.DataFrame:
    """``k``, the criterion's value, and ``chosen`` (True on the estimated K), one row per K tried."""
    return pd.DataFrame({"k": estimate.ks, estimate.criterion: estimate.scores, "chosen": estimate.ks == estimate.best})
