"""Map drawing (density thinning, the modality gap), text search and "why is this image here?" on planted
data; the semantic versions of these claims are tested on real CLIP features in ``test_real_features.py``."""

from __future__ import annotations

import numpy as np
import pytest

from cae_core import CaeError, planted_bundle, run_method
from cae_core.analysis import explain_image, query_from_banks, query_from_model, remove_modality_gap, \
    search_images, thin_by_density
from cae_core.inputs import load_clip
from cae_core.method import Bank
from cae_core.method.alignment import TOP_MATCHES
from ot_reference import heaviest, row_shares


@pytest.fixture(scope="module")
def run():
    bundle = planted_bundle(n_images=400, n_classes=4, dim=32, n_nouns=80, n_captions=80, seed=2)
    return bundle, run_method(bundle, "cae", 4)


def test_thinning_keeps_sparse_regions_whole_and_thins_dense_ones():
    rng = np.random.default_rng(0)
    dense, sparse = rng.normal(0, 0.5, (20_000, 2)), rng.uniform(10, 30, (300, 2))
    points = np.concatenate([dense, sparse])
    kept = thin_by_density(points, 2000, seed=1)
    assert len(kept) <= 2000 and np.all(np.diff(kept) > 0)
    assert (kept >= 20_000).sum() >= 290  # the outlying region keeps (nearly) every point
    assert np.array_equal(kept, thin_by_density(points, 2000, seed=1))
    assert np.array_equal(thin_by_density(points[:500], 2000), np.arange(500))


def test_removing_the_gap_centres_each_modality_and_keeps_unit_rows():
    rng = np.random.default_rng(0)
    images, texts = rng.normal(1, 1, (50, 8)), rng.normal(-1, 1, (20, 8))
    centred = remove_modality_gap(images, texts)
    for before, after in zip((images, texts), centred):
        assert np.allclose(np.linalg.norm(after, axis=1), 1, atol=1e-5)
        expected = before - before.mean(axis=0)
        assert np.allclose(after, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)


def test_a_noun_of_the_bank_stands_in_for_a_phrase_without_a_text_tower(run):
    bundle, result = run
    word = str(bundle.nouns[5])
    query = query_from_banks(bundle, word)
    assert query.stand_ins == [word] and "noun bank's row" in query.source
    assert np.allclose(query.embedding, bundle.noun_embeddings[5] / np.linalg.norm(bundle.noun_embeddings[5]))
    found = search_images(result, bundle, query, Bank.NOUNS, n=10)
    assert np.array_equal(found.ranked, np.argsort(-(bundle.image_embeddings @ query.embedding), kind="stable")[:10])
    assert np.all(np.diff(found.cosine) <= 0) and np.all(np.diff(found.plan_mass) <= 0)
    # planted texts name their class ("noun 2-17"): the plan links the query to images of that class
    word_class = int(word.split()[1].split("-")[0])
    assert np.mean(bundle.labels[found.plan_images] == word_class) >= 0.8


def test_captions_stand_in_when_no_noun_spells_the_phrase_and_nothing_is_a_clear_error(run):
    bundle, _ = run
    query = query_from_banks(bundle, "caption")  # every planted caption is "caption <class>-<i>"
    assert len(query.stand_ins) == 80 and "captions that mention it" in query.source
    with pytest.raises(CaeError, match="no noun or caption of this bundle spells “zebra crossing”"):
        query_from_banks(bundle, "zebra crossing")
    with pytest.raises(CaeError, match="type a word"):
        query_from_banks(bundle, "   ")


def test_a_text_tower_encodes_the_phrase_and_a_foreign_dimension_is_refused(run, clip_model_name):
    bundle, result = run
    clip = load_clip(clip_model_name, None, "cpu")
    query = query_from_model(clip, "a crane lifting steel")
    assert query.stand_ins == [] and "text tower" in query.source
    assert query.embedding.shape[-1] != bundle.image_embeddings.shape[1]
    with pytest.raises(CaeError, match="encoded by another model"):
        search_images(result, bundle, query)


def test_why_an_image_is_here(run):
    bundle, result = run
    image = 7
    why = explain_image(result, bundle, image)
    assert why.cluster == result.assignments[image]
    assert why.cluster_nouns == result.cluster_texts[why.cluster].nouns
    assert why.centre == result.semantic_space.centre_of_image[image]
    assert set(why.centre_texts) == {Bank.NOUNS, Bank.CAPTIONS} and all(why.centre_texts.values())
    for bank, part in result.aligned.items():
        # the share of the image's top matches (POT's plan row here) that falls on its cluster's names
        names = set(getattr(result.cluster_texts[why.cluster], bank.value))
        top, share = heaviest(row_shares(bundle.image_embeddings, part.selection.embeddings), image, TOP_MATCHES)
        naming = np.isin(part.selection.texts[top].astype(str), list(names))
        assert naming.any(), bank  # planted: the image's own class names its cluster
        assert why.naming_mass[bank] == pytest.approx(share[naming].sum(), abs=1e-4)
    assert set(why.neighbours) == {"image", "noun", "caption", "fused"}
    for found, cosine in why.neighbours.values():
        assert image not in found and np.all(np.diff(cosine) <= 0)
    shares = why.same_cluster_share(result.assignments)
    assert shares["fused"] >= 0.8  # planted classes: the fused neighbours share the cluster
    with pytest.raises(CaeError, match="out of range"):
        explain_image(result, bundle, bundle.n_images)
