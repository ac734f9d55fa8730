"""Synthetic bundles with planted class structure, for tests, benchmarks and demos.

They mimic CLIP's geometry roughly: unit vectors, texts far from images (the modality gap) so
image-text cosines sit around 0.1-0.4, each class with its own image and text directions.
"""

from __future__ import annotations

import numpy as np

from .bundle import FeaturesBundle


def planted_bundle(n_images: int = 1000, n_classes: int = 5, dim: int = 128, n_nouns: int = 200,
                   n_captions: int = 300, noise: float = 0.5, text_noise: float = 0.1,
                   seed: int = 0) -> FeaturesBundle:
    """Images of ``n_classes`` planted classes and text banks whose texts each belong to one class.

    ``noise`` spreads the images of a class, ``text_noise`` its texts (the texts that name one
    class lie closer together than its photos do). Texts are named ``"<kind> <class>-<i>"`` (e.g. ``"noun 3-17"``) so a test can read a text's class.
    Labels are balanced; ``class_names`` are ``"class 0"`` … .
    """
    rng = np.random.default_rng(seed)
    class_directions = rng.normal(size=(n_classes, dim))
    image_offset, text_offset = rng.normal(size=dim), rng.normal(size=dim)

    def unit(array: np.ndarray) -> np.ndarray:
        return array / np.linalg.norm(array, axis=-1, keepdims=True)

    def sample(count: int, offset: np.ndarray, spread: float) -> tuple[np.ndarray, np.ndarray]:
        classes = np.arange(count) % n_classes
        points = unit(class_directions)[classes] + 1.5 * unit(offset) + spread * rng.normal(size=(count, dim)) / np.sqrt(dim) * 3
        return unit(points), classes

    images, labels = sample(n_images, image_offset, noise)
    nouns, noun_classes = sample(n_nouns, text_offset, text_noise)
    captions, caption_classes = sample(n_captions, text_offset, text_noise)
    counters: dict = {}

    def names(kind: str, classes: np.ndarray) -> np.ndarray:
        out = []
        for c in classes:
            counters[(kind, c)] = counters.get((kind, c), -1) + 1
            out.append(f"{kind} {c}-{counters[(kind, c)]}")
        return np.array(out)

    return FeaturesBundle(image_embeddings=images, labels=labels, class_names=[f"class {k}" for k in range(n_classes)],
                          noun_embeddings=nouns, nouns=names("noun", noun_classes),
                          caption_embeddings=captions, captions=names("caption", caption_classes),
                          metadata={"synthetic": True, "seed": seed})
