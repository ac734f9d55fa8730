"""Clusters and method comparisons: named clusters, confusion with the classes, clusters matched between
runs, and the images that changed cluster."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics.cluster import contingency_matrix

from ..inputs.bundle import FeaturesBundle
from ..method.metrics import cluster_mapping
from ..method.run import ClusteringResult


def cluster_summary(result: ClusteringResult, bundle: FeaturesBundle) -> pd.DataFrame:
    """One row per cluster: size, top nouns and captions by transport mass, and, with labels,
    its majority class and the share of its labelled members in that class."""
    rows = []
    for entry in result.cluster_texts:
        row = {"cluster": entry.cluster, "size": entry.size, "nouns": ", ".join(entry.nouns),
               "captions": " | ".join(entry.captions)}
        if bundle.has_labels:
            labels = bundle.labels[(result.assignments == entry.cluster) & (bundle.labels >= 0)]
            if len(labels):
                counts = np.bincount(labels)
                row["majority class"] = bundle.label_name(int(counts.argmax()))
                row["purity"] = counts.max() / len(labels)
            else:
                row["majority class"], row["purity"] = "", np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def confusion_table(result: ClusteringResult, bundle: FeaturesBundle) -> pd.DataFrame:
    """Counts of labelled images per (class, cluster); clusters ordered as their Hungarian-matched
    classes so that a good clustering shows a heavy diagonal."""
    known = bundle.labels >= 0
    labels, clusters = bundle.labels[known], result.assignments[known]
    table = contingency_matrix(labels, clusters)
    classes, cluster_ids = np.unique(labels), np.unique(clusters)
    mapping = cluster_mapping(labels, clusters)
    class_rank = {c: k for k, c in enumerate(classes)}
    order = sorted(range(len(cluster_ids)),
                   key=lambda k: (class_rank.get(mapping.get(int(cluster_ids[k]), -1), len(classes)), cluster_ids[k]))
    return pd.DataFrame(table[:, order], index=[bundle.label_name(int(c)) for c in classes],
                        columns=[f"cluster {cluster_ids[k]}" for k in order])


def aligned_assignments(assign_a: np.ndarray, assign_b: np.ndarray) -> np.ndarray:
    """``assign_b`` renamed into ``assign_a``'s cluster ids by Hungarian matching (-1: no partner)."""
    mapping = match_clusters(assign_a, assign_b)
    return np.array([mapping.get(int(cluster), -1) for cluster in assign_b], dtype=np.int64)


def match_clusters(assign_a: np.ndarray, assign_b: np.ndarray) -> dict[int, int]:
    """Cluster of ``b`` → cluster of ``a`` maximising the images they share (one to one)."""
    return cluster_mapping(assign_a, assign_b)


def changed_images(result_a: ClusteringResult, result_b: ClusteringResult) -> np.ndarray:
    """Images whose cluster differs between two runs once their cluster ids are matched."""
    return np.flatnonzero(aligned_assignments(result_a.assignments, result_b.assignments) != result_a.assignments)


def metrics_long(results: dict[str, ClusteringResult]) -> pd.DataFrame:
    """``method, metric, value`` rows (acc, nmi, ari) for a grouped bar chart."""
    return pd.DataFrame([{"method": name, "metric": metric.upper(), "value": result.metrics[metric]}
                         for name, result in results.items() for metric in ("acc", "nmi", "ari")
                         if metric in result.metrics])
