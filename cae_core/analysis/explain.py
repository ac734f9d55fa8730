""""Why is this image here?": the evidence a run holds for one image's cluster.

Its cluster's name (the texts its members sent most mass to), the semantic-space centre it belongs
to and the texts that centre selected, the share of its own transport mass that went to texts naming
its cluster, and its nearest images in each representation with the clusters they fell in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import unit_rows
from ..errors import CaeError
from ..inputs.bundle import FeaturesBundle
from ..method.run import ClusteringResult
from ..method.semantic_space import Bank
from .similarity import representations


@dataclass
class ImageExplanation:
    """``cluster`` and its ``cluster_nouns``; ``centre`` the image's semantic-space centre (None for an
    image-only method) and ``centre_texts`` per bank, best first; ``naming_mass`` per bank: the share
    of the image's mass (its top matches) on texts among its cluster's names; ``neighbours`` per
    representation: (nearest images (k,), their cosine (k,)), the image itself left out."""

    image: int
    cluster: int
    cluster_nouns: list[str]
    cluster_captions: list[str]
    centre: int | None
    centre_texts: dict[Bank, list[str]]
    naming_mass: dict[Bank, float]
    neighbours: dict[str, tuple[np.ndarray, np.ndarray]]

    def same_cluster_share(self, assignments: np.ndarray) -> dict[str, float]:
        """Per representation, the share of the neighbours in the image's cluster."""
        return {name: float(np.mean(assignments[found] == self.cluster)) if len(found) else float("nan")
                for name, (found, _) in self.neighbours.items()}


def explain_image(result: ClusteringResult, bundle: FeaturesBundle, image: int, n_texts: int = 5,
                  n_neighbours: int = 6) -> ImageExplanation:
    """What placed ``image`` in its cluster in ``result`` (see the module's docstring)."""
    if not 0 <= image < bundle.n_images:
        raise CaeError(f"image {image} is out of range (0..{bundle.n_images - 1})")
    cluster = int(result.assignments[image])
    named = result.cluster_texts[cluster]
    names = {Bank.NOUNS: set(named.nouns), Bank.CAPTIONS: set(named.captions)}
    space = result.semantic_space
    centre = int(space.centre_of_image[image]) if space is not None else None
    centre_texts, naming_mass = {}, {}
    for bank, part in result.aligned.items():
        selection, alignment = part.selection, part.alignment
        rows = np.flatnonzero(selection.centre == centre)[:n_texts]  # grouped by centre, best first
        centre_texts[bank] = [str(text) for text in selection.texts[rows]]
        matched = selection.texts[alignment.top_text[image]]
        naming = np.isin(matched.astype(str), list(names[bank]))
        naming_mass[bank] = float(alignment.top_weight[image][naming].sum())
    neighbours = {}
    for name, points in representations(result, bundle).items():
        x = unit_rows(points)
        cosine = x @ x[image]
        cosine[image] = -np.inf
        nearest = np.argsort(-cosine, kind="stable")[:n_neighbours]
        neighbours[name] = (nearest, cosine[nearest])
    return ImageExplanation(image, cluster, list(named.nouns), list(named.captions), centre, centre_texts,
                            naming_mass, neighbours)
