"""Synthetic bundles with planted class structure and CLIP's geometry, for tests, benchmarks and demos.

Every vector is a modality offset plus a class direction plus noise, in shares of its squared norm
chosen to match the real CLIP features in ``shared/data/embeddings`` (README there): any two image
embeddings have cosine ~0.6 (same class ~0.75), any two texts ~0.55-0.6, an image and a text ~0.2
(~0.35 for its own class's texts). The shared offsets are CLIP's modality gap; data without it hid
that CAE's fusion as written weighs the gap rather than the image (issue 9).
"""

from __future__ import annotations

import numpy as np

from ..arrays import unit_rows
from .bundle import FeaturesBundle

IMAGE_OFFSET_SHARE = 0.60  # image-image cosine of two classes (real: 0.62-0.64)
TEXT_OFFSET_SHARE = 0.55  # text-text cosine of two classes (real: ~0.6 overall)
OFFSET_COSINE = 0.30  # cosine of the image and text offsets: image-text ~0.17 + class term (real: 0.17-0.21)


def _basis(rng: np.random.Generator, n_classes: int, dim: int) -> np.ndarray:
    """Near-orthogonal unit directions: the two offsets, then one per class (the first draws of ``rng``)."""
    basis = rng.normal(size=(dim, n_classes + 2))
    if dim >= n_classes + 2:
        basis = np.linalg.qr(basis)[0]
    return unit_rows(basis.T, np.float64)


def planted_training_images(n_images: int, n_classes: int = 5, dim: int = 128, noise: float = 0.6, seed: int = 0,
                            sample_seed: int = 1, chunk_rows: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """More images (float32 (n, dim), labels (n,)) of the classes of ``planted_bundle(..., seed=seed)``:
    a training split for it, drawn with ``sample_seed`` ``chunk_rows`` at a time, so that 1.28 M x 512
    takes its 2.6 GB and little more."""
    basis = _basis(np.random.default_rng(seed), n_classes, dim)
    rng = np.random.default_rng(sample_seed)
    images = np.empty((n_images, dim), dtype=np.float32)
    labels = np.arange(n_images) % n_classes
    rest = 1 - IMAGE_OFFSET_SHARE
    for start in range(0, n_images, chunk_rows):
        classes = labels[start:start + chunk_rows]
        images[start:start + len(classes)] = unit_rows(
            np.sqrt(IMAGE_OFFSET_SHARE) * basis[0] + np.sqrt(rest * (1 - noise)) * basis[2:][classes]
            + np.sqrt(rest * noise) * unit_rows(rng.normal(size=(len(classes), dim)), np.float64))
    return images, labels


def planted_bundle(n_images: int = 1000, n_classes: int = 5, dim: int = 128, n_nouns: int = 200,
                   n_captions: int = 300, noise: float = 0.6, text_noise: float = 0.45,
                   seed: int = 0) -> FeaturesBundle:
    """Images of ``n_classes`` planted classes and text banks whose texts each belong to one class.

    ``noise`` (0-1) is the share of an image's non-offset part that is noise rather than its class
    direction; ``text_noise`` the same for texts. Texts are named ``"<kind> <class>-<i>"`` (e.g.
    ``"noun 3-17"``) so a test can read a text's class. Labels are balanced; ``class_names`` are
    ``"class 0"`` ... .
    """
    rng = np.random.default_rng(seed)
    basis = _basis(rng, n_classes, dim)
    image_offset = basis[0]
    text_offset = OFFSET_COSINE * basis[0] + np.sqrt(1 - OFFSET_COSINE ** 2) * basis[1]
    class_directions = basis[2:]

    def sample(count: int, offset: np.ndarray, offset_share: float, spread: float) -> tuple[np.ndarray, np.ndarray]:
        classes = np.arange(count) % n_classes
        rest = 1 - offset_share
        points = (np.sqrt(offset_share) * offset + np.sqrt(rest * (1 - spread)) * class_directions[classes]
                  + np.sqrt(rest * spread) * unit_rows(rng.normal(size=(count, dim)), np.float64))
        return unit_rows(points), classes

    images, labels = sample(n_images, image_offset, IMAGE_OFFSET_SHARE, noise)
    nouns, noun_classes = sample(n_nouns, text_offset, TEXT_OFFSET_SHARE, text_noise)
    captions, caption_classes = sample(n_captions, text_offset, TEXT_OFFSET_SHARE, text_noise)
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
