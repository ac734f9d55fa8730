"""The semantic space from another image set (issue 21): ``--space-from`` / ``CaeConfig.space_from``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cae_core import CaeConfig, CaeError, run_method
from cae_core.cli import main
from cae_core.inputs.bundle import save_bundle
from cae_core.inputs.synthetic import planted_bundle, planted_training_images
from cae_core.method.clustering import spherical_kmeans
from cae_core.method.semantic_space import default_n_centres


@pytest.fixture(scope="module")
def bundle():
    return planted_bundle(n_images=400, n_classes=4, dim=32, n_nouns=120, n_captions=90, seed=6)


@pytest.fixture(scope="module")
def training(bundle, tmp_path_factory):
    """A larger training split of the same classes, carrying the same text banks."""
    images, labels = planted_training_images(1500, n_classes=4, dim=32, seed=6)
    path = tmp_path_factory.mktemp("train") / "train.npz"
    save_bundle(dataclasses.replace(bundle, image_embeddings=images, labels=labels, image_ids=None), path)
    return path, images


def test_the_space_is_made_from_the_other_sets_images_and_sized_by_them(bundle, training):
    path, images = training
    result = run_method(bundle, "cae", 4, config=CaeConfig(space_from=str(path)), seed=1)
    space = result.semantic_space
    assert space.n_centres == default_n_centres(len(images), 4) == 5  # N/300 of the training split, not 400/300
    np.testing.assert_allclose(space.centres, spherical_kmeans(images, 5, seed=1).centres, atol=1e-6)
    # the clustered images each get their nearest of those centres
    unit = bundle.image_embeddings / np.linalg.norm(bundle.image_embeddings, axis=1, keepdims=True)
    np.testing.assert_array_equal(space.centre_of_image, (unit @ space.centres.T).argmax(axis=1))
    assert len(space.centre_of_image) == bundle.n_images and result.metrics["acc"] > 0.9


def test_a_space_from_the_same_images_is_the_run_without_it(bundle, tmp_path):
    path = save_bundle(bundle, tmp_path / "same.npz")
    plain = run_method(bundle, "cae", 4, seed=2)
    same = run_method(bundle, "cae", 4, config=CaeConfig(space_from=str(path)), seed=2)
    np.testing.assert_array_equal(same.semantic_space.centre_of_image, plain.semantic_space.centre_of_image)
    np.testing.assert_array_equal(same.assignments, plain.assignments)


def test_a_space_bundle_with_another_d_or_other_banks_is_refused(bundle, tmp_path, capsys):
    other_d = planted_bundle(n_images=100, n_classes=4, dim=16, n_nouns=120, n_captions=90, seed=6)
    other_banks = dataclasses.replace(bundle, nouns=np.array([f"x{i}" for i in range(len(bundle.nouns))]))
    for name, space, message in (("d.npz", other_d, "d = 16"), ("banks.npz", other_banks, "other nouns")):
        path = save_bundle(space, tmp_path / name)
        with pytest.raises(CaeError, match=message):
            run_method(bundle, "cae", 4, config=CaeConfig(space_from=str(path)))
    features = save_bundle(bundle, tmp_path / "b.npz")
    assert main(["compare", "--features", str(features), "--clusters", "4", "--out", str(tmp_path / "o"),
                 "--space-from", str(tmp_path / "missing.npz"), "--quiet"]) == 2
    assert "--space-from bundle not found" in capsys.readouterr().err
    with pytest.raises(CaeError, match="space_from"):
        CaeConfig(space_from="")


def test_cluster_with_space_from_on_the_command_line(bundle, training, tmp_path, capsys):
    features = save_bundle(bundle, tmp_path / "b.npz")
    assert main(["cluster", "--features", str(features), "--clusters", "4", "--out", str(tmp_path / "o"),
                 "--space-from", str(training[0]), "--quiet"]) == 0
    assert '"acc"' in capsys.readouterr().out
