"""How alike images are in each representation: CAE's Figure 2 (one pair), and within- against
between-group similarity (classes, or the senses of a word)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..arrays import unit_rows
from ..inputs.bundle import FeaturesBundle
from ..method.run import ClusteringResult

REPRESENTATIONS = ("image", "noun", "caption", "fused")


def representations(result: ClusteringResult, bundle: FeaturesBundle) -> dict[str, np.ndarray]:
    """Each representation a run has: image embedding, noun and caption correspondences, fused features."""
    found = {"image": bundle.image_embeddings}
    found.update({bank.modality: part.alignment.correspondence for bank, part in result.aligned.items()})
    if result.fusion is not None:
        found["fused"] = result.features
    return found


def pair_similarities(result: ClusteringResult, bundle: FeaturesBundle, i: int, j: int) -> dict[str, float | None]:
    """CAE's Figure 2 for images ``i`` and ``j``: cosine of their image embeddings, noun and caption
    correspondences and fused features (None for a representation the run lacks)."""
    found = representations(result, bundle)
    return {name: float(unit_rows(found[name][i], np.float64) @ unit_rows(found[name][j], np.float64))
                  if name in found else None
            for name in REPRESENTATIONS}


def separation(result: ClusteringResult, bundle: FeaturesBundle, images: np.ndarray,
               groups: np.ndarray, centred: bool = False) -> pd.DataFrame:
    """Mean cosine of image pairs in the same group and in different groups, per representation.

    A representation separates the groups (e.g. machine cranes from storks) when the two means
    are far apart; ``gap`` = within − between. ``centred`` first subtracts each representation's
    mean over all images: a common direction (CLIP's modality gap puts one in every text
    correspondence) raises both means alike and hides how far apart the groups are.
    """
    groups = np.asarray(groups)
    same = groups[:, None] == groups[None, :]
    off_diagonal = ~np.eye(len(groups), dtype=bool)
    rows = []
    for name, matrix in representations(result, bundle).items():
        rows_of = np.asarray(matrix[images], dtype=np.float64)
        if centred:
            rows_of = rows_of - np.asarray(matrix, dtype=np.float64).mean(axis=0)
        unit = unit_rows(rows_of, np.float64)
        cosine = unit @ unit.T
        within = cosine[same & off_diagonal].mean() if (same & off_diagonal).any() else np.nan
        between = cosine[~same].mean() if (~same).any() else np.nan
        rows.append({"representation": name, "within": within, "between": between, "gap": within - between})
    return pd.DataFrame(rows)


def shared_cluster_rate(assignments: np.ndarray, images: np.ndarray, groups: np.ndarray) -> float:
    """Share of pairs of ``images`` from different groups that land in the same cluster (lower: separated)."""
    groups = np.asarray(groups)
    clusters = np.asarray(assignments)[images]
    different = groups[:, None] != groups[None, :]
    if not different.any():
        return float("nan")
    return float((clusters[:, None] == clusters[None, :])[different].mean())
