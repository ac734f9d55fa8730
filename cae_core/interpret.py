"""Reading a run: polysemous nouns, pair similarities (CAE's Figure 2), clusters, method comparisons.

Arrays and tables in, arrays and tables out; the explorer's Clusters and Polysemy pages draw them.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from sklearn.metrics.cluster import contingency_matrix

from .bundle import FeaturesBundle
from .metrics import cluster_mapping
from .pipeline import ClusteringResult, cluster_texts

TOP_NOUNS = 3  # an image "matches" a word when the word is among its 3 heaviest OT-matched nouns
REPRESENTATIONS = ("image", "noun", "caption", "fused")


def normalise_word(word: str) -> str:
    """Lower case, spaces for underscores (WordNet lemmas keep underscores: "water_tank")."""
    return " ".join(word.replace("_", " ").lower().split())


def noun_rows(nouns: np.ndarray, word: str) -> np.ndarray:
    """Rows of a noun bank whose lemma is ``word`` (one per WordNet sense; the bank keeps duplicates)."""
    target = normalise_word(word)
    return np.flatnonzero([normalise_word(str(noun)) == target for noun in nouns])


def _unit(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    return array / np.linalg.norm(array, axis=-1, keepdims=True).clip(min=1e-12)


# --- images the noun pipeline matches to a word ---------------------------------------------------

def _word_in_top(result: ClusteringResult, word: str, top: int) -> np.ndarray:
    """(N, top) bool: whether each of an image's ``top`` heaviest matched nouns is ``word``."""
    alignment, selection = result.noun_alignment, result.semantic_space and result.semantic_space.nouns
    if alignment is None or selection is None:
        return np.zeros((len(result.assignments), 0), dtype=bool)
    is_word = np.zeros(len(selection), dtype=bool)
    is_word[noun_rows(selection.texts, word)] = True
    return is_word[alignment.top_text[:, :top]]


def images_matching_noun(result: ClusteringResult, word: str, top: int = TOP_NOUNS) -> np.ndarray:
    """Images whose ``top`` heaviest OT-matched nouns include ``word``, heaviest match first.

    Empty when the run aligned no nouns or the semantic space did not select the word.
    """
    hits = _word_in_top(result, word, top)
    index = np.flatnonzero(hits.any(axis=1))
    if not len(index):
        return index
    mass = (result.noun_alignment.top_weight[index, :top] * hits[index]).sum(axis=1)
    return index[np.argsort(-mass, kind="stable")]


def matched_senses(result: ClusteringResult, bundle: FeaturesBundle, word: str, images: np.ndarray,
                   top: int = TOP_NOUNS) -> list[str]:
    """For each image, the WordNet synset of its heaviest matched ``word`` row ("" when unknown).

    The bank holds one row per (lemma, synset), so the row OT chose names a sense; when the rows
    of one lemma share an embedding, which of them wins says nothing about the sense.
    """
    if bundle.noun_synsets is None or not len(images):
        return [""] * len(images)
    hits = _word_in_top(result, word, top)[images]
    best = np.argmax(hits, axis=1)  # top matches are sorted by weight: the first hit is the heaviest
    rows = result.semantic_space.nouns.bank_index[result.noun_alignment.top_text[images, best]]
    return [str(bundle.noun_synsets[row]) for row in rows]


def group_texts(result: ClusteringResult, images: np.ndarray, groups: np.ndarray, n_texts: int = 5) -> list[dict]:
    """The nouns and captions with the most transport mass from each group of ``images``.

    ``groups`` (len(images),) holds group ids 0..G-1; same format as ``cluster_texts``.
    """
    assignments = np.full(len(result.assignments), -1)
    assignments[images] = groups
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    return cluster_texts(assignments, n_groups, result.semantic_space, result.noun_alignment,
                         result.caption_alignment, n_texts)


# --- similarities of representations ----------------------------------------------------------

def representations(result: ClusteringResult, bundle: FeaturesBundle) -> dict[str, np.ndarray]:
    """Each representation a run has: image embedding, noun and caption correspondences, fused features."""
    found = {"image": bundle.image_embeddings}
    if result.noun_alignment is not None:
        found["noun"] = result.noun_alignment.correspondence
    if result.caption_alignment is not None:
        found["caption"] = result.caption_alignment.correspondence
    if result.fusion is not None:
        found["fused"] = result.features
    return found


def pair_similarities(result: ClusteringResult, bundle: FeaturesBundle, i: int, j: int) -> dict[str, float | None]:
    """CAE's Figure 2 for images ``i`` and ``j``: cosine of their image embeddings, noun and caption
    correspondences and fused features (None for a representation the run lacks)."""
    found = representations(result, bundle)
    return {name: float(_unit(found[name][i]) @ _unit(found[name][j])) if name in found else None
            for name in REPRESENTATIONS}


def separation(result: ClusteringResult, bundle: FeaturesBundle, images: np.ndarray,
               groups: np.ndarray) -> pd.DataFrame:
    """Mean cosine of image pairs in the same group and in different groups, per representation.

    A representation separates the groups (e.g. machine cranes from storks) when the two means
    are far apart; ``gap`` = within − between.
    """
    groups = np.asarray(groups)
    same = groups[:, None] == groups[None, :]
    off_diagonal = ~np.eye(len(groups), dtype=bool)
    rows = []
    for name, matrix in representations(result, bundle).items():
        unit = _unit(matrix[images])
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


# --- the text side of a word --------------------------------------------------------------------

def captions_mentioning(captions: np.ndarray | list[str], word: str) -> np.ndarray:
    """Indices of captions that contain ``word`` (or its plural) as a whole word, case-insensitively."""
    words = normalise_word(word).split()
    if not words:
        return np.zeros(0, dtype=np.int64)
    pattern = re.compile(r"\b" + r"[\s_-]+".join(map(re.escape, words)) + r"(?:s|es)?\b", re.IGNORECASE)
    return np.array([i for i, caption in enumerate(captions) if pattern.search(str(caption))], dtype=np.int64)


def word_senses(bundle: FeaturesBundle, word: str) -> pd.DataFrame:
    """The bank's rows for ``word``: ``row, synset, gloss`` (empty strings when the bundle lacks them)."""
    rows = noun_rows(bundle.nouns, word)
    return pd.DataFrame({
        "row": rows,
        "synset": [str(bundle.noun_synsets[r]) if bundle.noun_synsets is not None else "" for r in rows],
        "gloss": [str(bundle.noun_glosses[r]) if bundle.noun_glosses is not None else "" for r in rows],
    })


def senses_distinguishable(bundle: FeaturesBundle, word: str, tolerance: float = 1e-4) -> bool:
    """Whether the bank's rows for ``word`` differ in embedding; a lemma encoded without its gloss
    gives every sense the same vector, so no similarity can tell the senses apart."""
    embeddings = bundle.noun_embeddings[noun_rows(bundle.nouns, word)]
    if len(embeddings) < 2:
        return False
    return bool(np.max(1 - _unit(embeddings) @ _unit(embeddings[0])) > tolerance)


def sense_caption_similarity(bundle: FeaturesBundle, word: str, caption_index: np.ndarray) -> pd.DataFrame:
    """Cosine of each chosen caption with each sense's noun embedding, and the closest sense.

    Columns: ``caption`` then one per sense (named by synset, or bank row when synsets are unknown),
    then ``closest`` ("" on a tie). Empty when the bank has no row for ``word``.
    """
    senses = word_senses(bundle, word)
    if senses.empty:
        return pd.DataFrame(columns=["caption", "closest"])
    names = [synset or f"row {row}" for synset, row in zip(senses["synset"], senses["row"])]
    # one column per distinct name: the bank may repeat a (lemma, synset) row
    names = [name if names.count(name) == 1 else f"{name} (row {row})" for name, row in zip(names, senses["row"])]
    caption_index = np.asarray(caption_index, dtype=np.int64)
    cosine = bundle.caption_embeddings[caption_index] @ bundle.noun_embeddings[senses["row"].to_numpy()].T
    table = pd.DataFrame(cosine, columns=names)
    table.insert(0, "caption", bundle.captions[caption_index])
    # a tie (senses sharing one embedding) names no sense
    ranked = np.sort(cosine, axis=1)
    tied = ranked[:, -1] - ranked[:, -2] < 1e-6 if len(names) > 1 else np.zeros(len(cosine), dtype=bool)
    table["closest"] = ["" if tie else names[k] for k, tie in zip(cosine.argmax(axis=1), tied)]
    return table


# --- clusters and method comparisons ------------------------------------------------------------

def cluster_summary(result: ClusteringResult, bundle: FeaturesBundle) -> pd.DataFrame:
    """One row per cluster: size, top nouns and captions by transport mass, and, with labels,
    its majority class and the share of its labelled members in that class."""
    rows = []
    for entry in result.cluster_texts:
        row = {"cluster": entry["cluster"], "size": entry["size"], "nouns": ", ".join(entry["nouns"]),
               "captions": " | ".join(entry["captions"])}
        if bundle.has_labels:
            labels = bundle.labels[(result.assignments == entry["cluster"]) & (bundle.labels >= 0)]
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


# --- exports ------------------------------------------------------------------------------------


