"""A tiny hand-made bundle with CAE's polysemy case: machine cranes that look like storks.

Shared by the analysis, Polysemy-page and Clusters-page tests (not a test module itself).
"""

from __future__ import annotations

import numpy as np

from cae_core.inputs.bundle import FeaturesBundle

CLASSES = ("crane", "black stork", "goose", "dog")
SYNSETS = {"machine": "crane.n.04", "bird": "crane.n.05"}
GLOSSES = {"machine": "lifts and moves heavy objects; lifting tackle is suspended from a pivoted boom",
           "bird": "large long-necked wading bird of marshes and plains in many parts of the world"}


def crane_bundle(per_class: int = 40, dim: int = 32, seed: int = 0) -> FeaturesBundle:
    """Four classes; machine cranes and storks share a "tall thin silhouette" direction, so their
    images look alike and the noun "crane" (two rows, one per sense, one embedding: the lemma is
    encoded alone) matches both; captions tell construction sites from wetlands."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:6]
    machine, bird, goose, dog, silhouette, water = basis

    def unit(rows: np.ndarray) -> np.ndarray:
        return rows / np.linalg.norm(rows, axis=-1, keepdims=True)

    def around(direction: np.ndarray, count: int, spread: float = 0.25) -> np.ndarray:
        return unit(direction + spread * rng.normal(size=(count, dim)) / np.sqrt(dim) * 3)

    class_images = [1.5 * silhouette + machine, 1.5 * silhouette + bird + 0.5 * water, goose + water, dog]
    images = np.concatenate([around(centre, per_class) for centre in class_images])
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    nouns = {("crane", SYNSETS["machine"], GLOSSES["machine"]): 1.5 * silhouette + machine + bird,
             ("crane", SYNSETS["bird"], GLOSSES["bird"]): 1.5 * silhouette + machine + bird,
             ("stork", "stork.n.01", "long-legged long-necked wading bird"): silhouette + bird + water,
             ("goose", "goose.n.01", "web-footed long-necked typically gregarious migratory aquatic birds"):
                 goose + water,
             ("dog", "dog.n.01", "a member of the genus Canis"): dog,
             ("derrick", "derrick.n.01", "a framework erected over an oil well"): silhouette + machine,
             ("heron", "heron.n.02", "grey or white wading bird with long neck and long legs"):
                 silhouette + bird + 2 * water,
             ("gander", "gander.n.01", "mature male goose"): goose + 0.5 * water,
             ("puppy", "puppy.n.01", "a young dog"): dog + 0.3 * goose,
             ("hound", "hound.n.01", "any of several breeds of dog used for hunting"): dog - 0.3 * goose,
             ("bulldozer", "bulldozer.n.01", "large powerful tractor"): machine - 0.5 * silhouette}
    captions = {"A tall crane lifts steel beams over a construction site.": silhouette + 2 * machine,
                "Yellow cranes and scaffolding on a building site.": silhouette + 2 * machine,
                "A black stork wades through the shallow marsh.": silhouette + 2 * bird + water,
                "Two cranes standing in a wetland at dawn.": silhouette + 2 * bird + water,
                "Geese swimming across a lake.": goose + water,
                "A dog runs on the grass.": dog,
                "A brown dog catches a frisbee.": dog}
    return FeaturesBundle(
        image_embeddings=images, labels=labels, class_names=list(CLASSES),
        image_ids=[f"{CLASSES[label]}/{k}.jpg" for k, label in enumerate(labels)],
        noun_embeddings=unit(np.array(list(nouns.values()))), nouns=[key[0] for key in nouns],
        noun_synsets=[key[1] for key in nouns], noun_glosses=[key[2] for key in nouns],
        caption_embeddings=unit(np.array(list(captions.values()))), captions=list(captions),
        metadata={"synthetic": "crane"})
