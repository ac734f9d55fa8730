"""Clustering metrics against ground truth: ACC (Hungarian matching), NMI, ARI, all in [0, 1]."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from ..errors import CaeError


def _validate(labels_true, labels_pred) -> tuple[np.ndarray, np.ndarray]:
    labels_true = np.asarray(labels_true)
    labels_pred = np.asarray(labels_pred)
    if labels_true.shape != labels_pred.shape or labels_true.ndim != 1:
        raise CaeError(f"labels of shapes {labels_true.shape} and {labels_pred.shape} cannot be compared")
    if labels_true.size == 0:
        raise CaeError("no labels to evaluate")
    return labels_true, labels_pred


def cluster_accuracy(labels_true, labels_pred) -> float:
    """Fraction of images correct under the best one-to-one map of clusters to classes.

    The map is the Hungarian assignment on the contingency table (clusters and classes
    may differ in number; unmatched clusters count as wrong).
    """
    labels_true, labels_pred = _validate(labels_true, labels_pred)
    table = contingency_matrix(labels_true, labels_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / labels_true.size)


def cluster_mapping(labels_true, labels_pred) -> dict[int, int]:
    """Hungarian map cluster id → class id (clusters without a class are left out)."""
    labels_true, labels_pred = _validate(labels_true, labels_pred)
    classes, clusters = np.unique(labels_true), np.unique(labels_pred)
    table = contingency_matrix(labels_true, labels_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return {int(clusters[c]): int(classes[r]) for r, c in zip(rows, cols)}


def evaluate(labels_true, labels_pred) -> dict[str, float]:
    """``{"acc", "nmi", "ari"}`` over the images whose true label is known (>= 0)."""
    labels_true, labels_pred = _validate(labels_true, labels_pred)
    known = labels_true >= 0
    if not known.any():
        return {}
    labels_true, labels_pred = labels_true[known], labels_pred[known]
    return {
        "acc": cluster_accuracy(labels_true, labels_pred),
        "nmi": float(normalized_mutual_info_score(labels_true, labels_pred)),
        "ari": float(adjusted_rand_score(labels_true, labels_pred)),
    }
