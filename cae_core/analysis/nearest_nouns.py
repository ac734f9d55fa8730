"""MCA's Figure 1 for the loaded bundle: each image's nearest noun in CLIP's space, right or wrong.

Right means the noun is the image's class or a kind of it in WordNet (the class name is a lemma of the
noun's synset or of one of its hypernyms): "airliner" is right for an airplane, "tabby" for a cat.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..inputs.bundle import FeaturesBundle
from ..method.hierarchy import lineage_lemmas


def nearest_nouns(bundle: FeaturesBundle, images: np.ndarray, keep: np.ndarray | None = None) -> pd.DataFrame:
    """One row per image: ``image``, ``class``, ``nearest noun``, ``synset``, ``right`` (None when the
    bundle has no labels or synsets to judge by). ``keep`` (M,) bool limits the nouns (a filtered space)."""
    rows = np.flatnonzero(keep) if keep is not None else np.arange(len(bundle.nouns))
    best = rows[np.argmax(bundle.image_embeddings[images] @ bundle.noun_embeddings[rows].T, axis=1)]
    table = pd.DataFrame({"image": images, "nearest noun": bundle.nouns[best].astype(str)})
    table["synset"] = bundle.noun_synsets[best].astype(str) if bundle.noun_synsets is not None else ""
    if bundle.has_labels and bundle.class_names is not None:
        classes = [bundle.label_name(int(label)) if label >= 0 else "" for label in bundle.labels[images]]
        table.insert(1, "class", classes)
        table["right"] = [None if not name or not synset else name.replace("_", " ").lower() in lineage_lemmas(synset)
                          for name, synset in zip(classes, table["synset"])]
    return table
