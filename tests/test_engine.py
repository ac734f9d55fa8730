"""The CAE engine on synthetic embeddings with planted structure."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

import cae_core.alignment as alignment_module
from cae_core import METHODS, CaeError, run_method, run_methods
from cae_core.alignment import ot_alignment, softmax_alignment, transport_plan
from cae_core.bench import pot_correspondence
from cae_core.clustering import spherical_kmeans
from cae_core.device import with_memory_fallback
from cae_core.fusion import adaptive_fusion
from cae_core.metrics import cluster_accuracy, evaluate
from cae_core.semantic_space import default_n_centres
from cae_core.synthetic import planted_bundle


@pytest.fixture(scope="module")
def bundle():
    return planted_bundle(n_images=900, n_classes=6, dim=128, n_nouns=240, n_captions=360, seed=4)


@pytest.fixture(scope="module")
def all_results(bundle):
    return run_methods(bundle, n_clusters=6)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_recovers_planted_clusters(all_results, method):
    assert all_results[method].metrics["acc"] >= 0.98


def test_transport_plan_meets_both_marginals():
    rng = np.random.default_rng(0)
    images, texts = rng.normal(size=(50, 16)), rng.normal(size=(20, 16))
    plan = transport_plan(images, texts, epsilon=0.05, tol=1e-9, max_iter=5000)
    np.testing.assert_allclose(plan.sum(axis=1), np.full(50, 1 / 50), atol=1e-6)
    np.testing.assert_allclose(plan.sum(axis=0), np.full(20, 1 / 20), atol=1e-6)


def test_torch_sinkhorn_matches_pot_plan():
    rng = np.random.default_rng(1)
    images, texts = rng.normal(size=(60, 16)), rng.normal(size=(25, 16))
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    ours = transport_plan(images, texts, epsilon=0.05, tol=1e-9, max_iter=5000)
    reference = ot.sinkhorn(np.full(60, 1 / 60), np.full(25, 1 / 25), 1 - images @ texts.T, 0.05,
                            method="sinkhorn_log", stopThr=1e-9, numItermax=5000)
    assert np.abs(ours - reference).max() < 1e-6 * reference.max() * 10
    correspondence = ot_alignment(images, texts, epsilon=0.05, tol=1e-9, max_iter=5000).correspondence
    np.testing.assert_allclose(correspondence, pot_correspondence(images, texts, 0.05, 1e-9, 5000), atol=1e-5)


def test_sinkhorn_is_stable_at_small_epsilon():
    rng = np.random.default_rng(2)
    images, texts = rng.normal(size=(40, 8)), rng.normal(size=(10, 8))
    plan = transport_plan(images, texts, epsilon=0.002, tol=1e-8, max_iter=20000)
    assert np.all(np.isfinite(plan))
    np.testing.assert_allclose(plan.sum(axis=1), np.full(40, 1 / 40), atol=1e-5)
    np.testing.assert_allclose(plan.sum(axis=0), np.full(10, 1 / 10), atol=1e-5)


def test_blockwise_alignment_equals_whole(monkeypatch, bundle):
    texts = bundle.noun_embeddings[:50]
    whole = ot_alignment(bundle.image_embeddings, texts)
    monkeypatch.setattr(alignment_module, "MEMORY_BUDGET_BYTES", 1024)
    blocked = ot_alignment(bundle.image_embeddings, texts, block_rows=128)
    np.testing.assert_allclose(blocked.correspondence, whole.correspondence, atol=1e-5)
    np.testing.assert_array_equal(blocked.top_text[:, 0], whole.top_text[:, 0])


def _entropy(distribution: np.ndarray) -> float:
    p = distribution[distribution > 0]
    return float(-(p * np.log(p)).sum())


def test_ot_spreads_mass_over_texts_more_evenly_than_softmax(bundle):
    # Theorem 1's claim: column marginals prevent winner-takes-all retrieval
    texts = bundle.noun_embeddings[:60]
    ot_usage = ot_alignment(bundle.image_embeddings, texts).text_usage
    softmax_usage = softmax_alignment(bundle.image_embeddings, texts).text_usage
    assert _entropy(ot_usage) > _entropy(softmax_usage) + 0.5
    assert _entropy(ot_usage) > 0.99 * np.log(60)  # OT uses every text almost equally


def test_tac_notrain_matches_tacs_formula_exactly(bundle, all_results):
    result = all_results["tac-notrain"]
    space = result.semantic_space
    # TAC's filter_nouns.py: softmax over centres (temperature 1), argmax centre, top-5 per centre
    similarity = torch.as_tensor(space.centres) @ torch.as_tensor(bundle.noun_embeddings).T
    softmax_nouns = torch.softmax(similarity, dim=0)
    best = softmax_nouns.argmax(dim=0)
    expected = set()
    for k in range(len(space.centres)):
        members = torch.where(best == k)[0]
        confidence = softmax_nouns[:, members].max(dim=0)[0]
        expected.update(members[torch.argsort(confidence, descending=True)[:5]].tolist())
    assert set(space.nouns.bank_index.tolist()) == expected
    # TAC's retrieve_text.py + concat_kmeans: [normalise(x), normalise(softmax(x u^T / 0.005) u)]
    x = bundle.image_embeddings
    u = space.nouns.embeddings
    logits = x @ u.T / 0.005
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    retrieval = weights @ u
    retrieval /= np.linalg.norm(retrieval, axis=1, keepdims=True)
    tac_features = np.concatenate([x, retrieval], axis=1)
    np.testing.assert_allclose(2 * result.features, tac_features, atol=1e-5)
    np.testing.assert_array_equal(result.assignments, spherical_kmeans(tac_features, 6, seed=0).labels)


def test_fusion_weights_follow_the_prototype():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 8))
    near = x + 0.01 * rng.normal(size=(5, 8))
    far = rng.normal(size=(5, 8))
    fusion = adaptive_fusion({"image": x, "noun": near, "caption": far})
    assert fusion.weights.shape == (5, 3)
    np.testing.assert_allclose(fusion.weights.sum(axis=1), 1, atol=1e-6)
    assert np.all(fusion.weights[:, 2] < fusion.weights[:, 0])  # the outlier modality weighs least
    assert fusion.features.shape == (5, 24)
    assert adaptive_fusion({"image": x, "noun": near, "caption": far}, mode="sum").features.shape == (5, 8)


def test_metrics_hand_worked_and_against_scikit_learn():
    truth = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([2, 2, 1, 0, 0, 1])  # clusters 2→0, 0→1, 1→2: five of six right
    assert cluster_accuracy(truth, predicted) == pytest.approx(5 / 6)
    assert cluster_accuracy(truth, truth + 7) == 1.0
    scores = evaluate(truth, predicted)
    assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(truth, predicted))
    assert scores["ari"] == pytest.approx(adjusted_rand_score(truth, predicted))
    unknown = evaluate(np.array([-1, 0, 0, 1]), np.array([5, 1, 1, 0]))
    assert unknown["acc"] == 1.0  # the unlabelled image is left out


def test_identical_output_for_identical_seed(bundle):
    first = run_method(bundle, "cae", 6, seed=5)
    second = run_method(bundle, "cae", 6, seed=5)
    np.testing.assert_array_equal(first.assignments, second.assignments)
    np.testing.assert_array_equal(first.features, second.features)
    np.testing.assert_array_equal(first.fusion.weights, second.fusion.weights)


def test_result_holds_every_intermediate(all_results, bundle):
    result = all_results["cae"]
    n = bundle.n_images
    space = result.semantic_space
    assert space.n_centres == default_n_centres(n, 6) == 6
    assert len(space.nouns) == len(set(space.nouns.bank_index)) and len(space.nouns) <= 5 * space.n_centres
    assert result.noun_alignment.correspondence.shape == (n, 128)
    assert result.noun_alignment.top_text.shape == (n, 10)
    assert np.all(np.diff(result.noun_alignment.top_weight, axis=1) <= 1e-7)
    assert result.fusion.modalities == ("image", "noun", "caption")
    assert set(result.stage_seconds) >= {"semantic_space", "noun_alignment", "caption_alignment", "fusion", "kmeans"}
    # every cluster is named by texts of its own class ("noun 3-17" belongs to class 3)
    for entry in result.cluster_texts:
        members = result.assignments == entry["cluster"]
        majority = np.bincount(bundle.labels[members]).argmax()
        assert entry["nouns"] and all(noun.split()[1].split("-")[0] == str(majority) for noun in entry["nouns"])


def test_bad_requests_are_clear_errors(bundle):
    with pytest.raises(CaeError, match="cannot make 901 clusters from 900 images"):
        run_method(bundle, "cae", 901)
    with pytest.raises(CaeError, match="unknown method"):
        run_method(bundle, "kmeans++", 6)


def test_gpu_out_of_memory_falls_back_to_smaller_blocks_then_cpu():
    calls = []

    def compute(device, block_rows):
        calls.append((device.type, block_rows))
        if device.type == "cuda":
            raise torch.OutOfMemoryError("simulated")
        return block_rows

    assert with_memory_fallback(compute, torch.device("cuda"), 1024, min_block_rows=256) == 256
    assert calls == [("cuda", 1024), ("cuda", 512), ("cuda", 256), ("cpu", 256)]
