"""Planted embeddings whose images are real CIFAR-10 pictures, shared by the AppTest and browser tests
(not a test module itself)."""

from __future__ import annotations

import numpy as np
import pytest

from cae_core import FeaturesBundle, data_dir, planted_bundle

CIFAR = data_dir() / "images" / "cifar10-test"


def planted_cifar_bundle() -> FeaturesBundle:
    """300 planted images of the 10 CIFAR classes; image i is the (i // 10)-th picture of class i % 10.
    Skips the calling test where the shared CIFAR-10 images are absent."""
    if not CIFAR.is_dir():
        pytest.skip(f"the shared CIFAR-10 images are not at {CIFAR} (set CAE_DATA_DIR)")
    classes = sorted(path.name for path in CIFAR.iterdir() if path.is_dir())
    bundle = planted_bundle(n_images=300, n_classes=len(classes), dim=64, n_nouns=200, n_captions=300)
    bundle.class_names = np.array(classes)
    bundle.image_ids = np.array([f"{classes[label]}/{i // len(classes):04d}.jpg" for i, label in enumerate(bundle.labels)])
    return bundle
