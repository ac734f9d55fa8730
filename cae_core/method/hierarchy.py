"""MCA's hierarchy-aware semantic space (seed 002), training-free: WordNet nouns filtered by where their
hypernym chains place them, before the semantic space selects from them.

MCA removes nouns that are too general ("entity", "organism") and nouns whose hypernym chains lie far
from the images' concepts. The summary gives no numbers; inferred here, each with its reason:

- too general: a synset at most ``GENERAL_DEPTH`` = 5 steps below "entity" (entity 0, object 2,
  living_thing 4, organism 5, instrumentality 5), MCA's own examples being at depths 0 and 5;
- the images' concepts: each image's ``NEAREST_NOUNS`` = 5 nearest nouns, lifted to their ancestors at
  ``CONCEPT_DEPTH`` = 6 (animal, device, conveyance, dish: the level that separates the kinds of
  things a data set holds); a concept counts when at least ``MIN_SUPPORT`` = 1% of the images name it;
- far from them: a noun none of whose ancestors at that depth is one of the images' concepts.

MCA's three-level alignment training is not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..device import as_tensor, resolve_device
from ..errors import CaeError

GENERAL_DEPTH = 5
CONCEPT_DEPTH = 6
NEAREST_NOUNS = 5
MIN_SUPPORT = 0.01


@dataclass
class HierarchyFilter:
    """Which rows of a noun bank the hierarchy keeps. ``keep`` (M,) bool; ``reason`` (M,) str, "" for a
    kept row; ``concepts`` the images' concepts (synset name -> share of images naming it), largest first."""

    keep: np.ndarray
    reason: np.ndarray
    concepts: dict[str, float]


@lru_cache(maxsize=None)
def _synset(name: str):
    """The WordNet 3.0 synset called ``name``, or None (an empty name, or one WordNet 3.0 lacks:
    LVIS names a few synsets of its own, such as stop_sign.n.01)."""
    from nltk.corpus.reader.wordnet import WordNetError

    from ..inputs.corpora import wordnet_reader

    try:
        return wordnet_reader().synset(name) if name else None
    except WordNetError:
        return None


@lru_cache(maxsize=None)
def _ancestors_at(name: str, depth: int) -> frozenset[str]:
    """Synsets at ``depth`` on any hypernym path of the synset ``name`` (itself when it is at that depth)."""
    synset = _synset(name)
    if synset is None:
        return frozenset()
    return frozenset(path[depth].name() for path in synset.hypernym_paths() if len(path) > depth)


@lru_cache(maxsize=None)
def lineage_lemmas(name: str) -> frozenset[str]:
    """Lower-case lemmas (spaces for underscores) of the synset ``name`` and of all its hypernyms."""
    synset = _synset(name)
    if synset is None:
        return frozenset()
    lineage = {synset} | set(synset.closure(lambda s: s.hypernyms() + s.instance_hypernyms()))
    return frozenset(lemma.replace("_", " ").lower() for node in lineage for lemma in node.lemma_names())


def hierarchy_filter(image_embeddings: np.ndarray, noun_embeddings: np.ndarray, noun_synsets: np.ndarray | None,
                     device: str | torch.device = "auto", block_rows: int = 8192) -> HierarchyFilter:
    """Keep the nouns that are specific enough and share a concept with the images (see the module)."""
    if noun_synsets is None or not any(str(name) for name in noun_synsets):
        raise CaeError("the hierarchy semantic space needs WordNet synsets for the nouns (the bundle's "
                       "noun_synsets); encode with --nouns wordnet, or use the default space")
    synsets = [str(name) for name in noun_synsets]
    dev = resolve_device(device)
    nouns = as_tensor(noun_embeddings, dev)
    nearest = np.concatenate([
        (as_tensor(image_embeddings[start:start + block_rows], dev) @ nouns.T)
        .topk(min(NEAREST_NOUNS, len(synsets)), dim=1).indices.cpu().numpy()
        for start in range(0, len(image_embeddings), block_rows)])
    support: dict[str, int] = {}
    for rows in nearest:
        named = set().union(*(_ancestors_at(synsets[row], CONCEPT_DEPTH) for row in rows))
        for concept in named:
            support[concept] = support.get(concept, 0) + 1
    n_images = len(image_embeddings)
    concepts = {concept: count / n_images for concept, count in sorted(support.items(), key=lambda item: -item[1])
                if count >= MIN_SUPPORT * n_images}
    reason = np.full(len(synsets), "", dtype=object)
    for row, name in enumerate(synsets):
        synset = _synset(name)
        if synset is None:
            continue  # a noun WordNet cannot place: kept
        depth = synset.min_depth()
        if depth <= GENERAL_DEPTH:
            reason[row] = f"too general (depth {depth})"
        elif not _ancestors_at(name, CONCEPT_DEPTH) & concepts.keys():
            reason[row] = "far from the images' concepts"
    return HierarchyFilter(reason == "", reason.astype(str), concepts)
