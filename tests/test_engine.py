"""The CAE engine on synthetic embeddings with planted structure."""

from __future__ import annotations

import dataclasses

import numpy as np
import ot
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

import cae_core.method.alignment as alignment_module
from cae_core import METHODS, CaeConfig, CaeError, run_method, run_methods
from cae_core.method.run import available_methods, own_caption_view
from cae_core.method.alignment import SinkhornConvergenceWarning, ot_alignment, softmax_alignment, transport_plan
from cae_core.benchmarks import pot_correspondence
from cae_core.arrays import unit_rows
from cae_core.method.clustering import spherical_kmeans
from cae_core.device import with_memory_fallback
from cae_core.method.fusion import fuse, neighbour_agreement, split_half_agreement
from cae_core.method.metrics import cluster_accuracy, evaluate
from cae_core.method.semantic_space import default_n_centres
from cae_core.inputs.synthetic import planted_bundle


@pytest.fixture(scope="module")
def bundle():
    return planted_bundle(n_images=900, n_classes=6, dim=128, n_nouns=240, n_captions=360, seed=4)


@pytest.fixture(scope="module")
def all_results(bundle):
    return run_methods(bundle, n_clusters=6)


@pytest.mark.parametrize("method", [name for name, spec in METHODS.items() if not spec.needs_own_captions])
def test_every_method_recovers_planted_clusters(all_results, method):
    assert all_results[method].metrics["acc"] >= 0.98


def test_sac_uses_each_images_own_captions_and_needs_them(bundle):
    with pytest.raises(CaeError, match="needs per-image captions"):
        run_method(bundle, "sac-notrain", 6)
    assert "sac-notrain" not in available_methods(bundle)
    # tie every caption to an image of the class it was planted for ("caption 3-17" is class 3)
    caption_class = np.array([int(text.split()[1].split("-")[0]) for text in bundle.captions])
    image_ids = np.array([f"img{i}" for i in range(bundle.n_images)])
    owner = np.array([np.flatnonzero(bundle.labels == c)[i % 150] for i, c in enumerate(caption_class)])
    own = dataclasses.replace(bundle, image_ids=image_ids, caption_image_ids=image_ids[owner])
    result = run_method(own, "sac-notrain", 6)
    assert result.fusion.modalities == ("image", "caption")
    assert result.metrics["acc"] >= 0.98
    view = own_caption_view(own)
    first = owner[0]
    np.testing.assert_allclose(view[first], unit_rows(own.caption_embeddings[owner == first].sum(axis=0)), atol=1e-6)
    assert not view[np.setdiff1d(np.arange(own.n_images), owner)].any()  # images without captions: no view


def test_transport_plan_meets_both_marginals():
    rng = np.random.default_rng(0)
    images, texts = rng.normal(size=(50, 16)), rng.normal(size=(20, 16))
    plan = transport_plan(images, texts, epsilon=0.05, max_iter=5000)  # float32: 1e-6 is its reach
    np.testing.assert_allclose(plan.sum(axis=1), np.full(50, 1 / 50), atol=1e-6)
    np.testing.assert_allclose(plan.sum(axis=0), np.full(20, 1 / 20), atol=1e-6)


def test_torch_sinkhorn_matches_pot_plan():
    rng = np.random.default_rng(1)
    images, texts = rng.normal(size=(60, 16)), rng.normal(size=(25, 16))
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    ours = transport_plan(images, texts, epsilon=0.05, tol=1e-6, max_iter=5000)
    reference = ot.sinkhorn(np.full(60, 1 / 60), np.full(25, 1 / 25), 1 - images @ texts.T, 0.05,
                            method="sinkhorn_log", stopThr=1e-6, numItermax=5000)
    assert np.abs(ours - reference).max() < 1e-6 * reference.max() * 10
    correspondence = ot_alignment(images, texts, epsilon=0.05, tol=1e-6, max_iter=5000).correspondence
    np.testing.assert_allclose(correspondence, pot_correspondence(images, texts, 0.05, 1e-6, 5000), atol=1e-5)


@pytest.mark.filterwarnings("ignore::cae_core.method.alignment.SinkhornConvergenceWarning")  # float32's floor: ~1e-5
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
    # the same partition (restarts that reach it score equal to ~1e-8, so which one's numbering wins is noise)
    assert adjusted_rand_score(result.assignments, spherical_kmeans(tac_features, 6, seed=0).labels) == 1.0


def test_fusion_weights_follow_the_prototype():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 8))
    near = x + 0.01 * rng.normal(size=(5, 8))
    far = rng.normal(size=(5, 8))
    fusion = fuse({"image": x, "noun": near, "caption": far}, "paper", centre=False)
    assert fusion.weights.shape == (5, 3)
    np.testing.assert_allclose(fusion.weights.sum(axis=1), 1, atol=1e-6)
    assert np.all(fusion.weights[:, 2] < fusion.weights[:, 0])  # the outlier modality weighs least
    assert fusion.features.shape == (5, 24)
    assert fuse({"image": x, "noun": near, "caption": far}, combine="sum").features.shape == (5, 8)
    assert fuse({"image": x[:2], "noun": near[:2]}).weights.tolist() == [[0.5, 0.5], [0.5, 0.5]]  # too few to judge


def _softmax(logits: np.ndarray) -> np.ndarray:
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def test_paper_weights_are_the_softmax_of_prototype_cosines_on_the_vectors_they_weigh():
    rng = np.random.default_rng(5)
    modalities = {name: rng.normal(size=(40, 16)) for name in ("image", "noun", "caption")}
    centred = [unit_rows(unit_rows(m) - unit_rows(m).mean(axis=0)) for m in modalities.values()]
    prototype = unit_rows(np.mean(centred, axis=0))
    cosine = np.stack([(block * prototype).sum(axis=1) for block in centred], axis=1)
    paper = fuse(modalities, "paper")
    np.testing.assert_allclose(paper.prototype_cosine, cosine, atol=1e-5)
    np.testing.assert_allclose(paper.weights, _softmax(cosine / 0.01), atol=1e-5)
    # the features: each modality made unit, centred over the images, made unit again, weighted, concatenated
    expected = np.concatenate([paper.weights[:, [k]] * block for k, block in enumerate(centred)], axis=1)
    np.testing.assert_allclose(paper.features, expected, atol=1e-5)
    raw = np.concatenate([unit_rows(m) / 3 for m in modalities.values()], axis=1)
    np.testing.assert_allclose(fuse(modalities, "equal", centre=False).features, raw, atol=1e-6)
    with pytest.raises(CaeError, match="unknown fusion weighting"):
        fuse(modalities, "softmax")
    with pytest.raises(CaeError, match="gamma must be positive"):
        fuse(modalities, gamma=0)


def test_neighbour_agreement_counts_shared_neighbours_above_chance():
    rng = np.random.default_rng(2)
    x = unit_rows(rng.normal(size=(300, 12)))
    assert np.allclose(neighbour_agreement(x, [x], 5), 1)
    shuffled = x[rng.permutation(300)]  # the same points, neighbourhoods unrelated to the images'
    assert abs(float(neighbour_agreement(x, [shuffled], 5).mean())) < 0.05
    # 4 points on a line: 0's two nearest are 1 and 2; in the view they are 1 and 3 -> 1 of 2 shared
    line = unit_rows(np.array([[1, 0.0], [1, 0.1], [1, 0.2], [1, 0.3]]))
    view = unit_rows(np.array([[1, 0.0], [1, 0.1], [1, 0.9], [1, 0.15]]))
    chance = 2 / 3
    expected = max(0.0, (1 / 2 - chance) / (1 - chance))
    assert neighbour_agreement(line, [view], 2)[0, 0] == pytest.approx(expected)
    with pytest.raises(CaeError, match="1 <= k < N"):
        neighbour_agreement(line, [view], 4)


def test_neighbours_among_a_sample_are_the_brute_force_ones_and_exclude_only_the_image_itself():
    rng = np.random.default_rng(5)
    anchor, view = unit_rows(rng.normal(size=(500, 8))), unit_rows(rng.normal(size=(500, 8)))
    k, reference_rows = 4, 120
    sample = np.sort(np.random.default_rng(0).choice(500, size=reference_rows, replace=False))  # sample_rows, seed 0
    def near(x):
        similarity = x @ x[sample].T
        similarity[sample, np.arange(reference_rows)] = -np.inf  # an image in the sample is not its own neighbour
        return np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    shared = np.array([len(set(a) & set(b)) for a, b in zip(near(anchor), near(view))])
    chance = k / reference_rows
    expected = np.clip((shared / k - chance) / (1 - chance), 0, None)
    got = neighbour_agreement(anchor, [view], k, reference_rows=reference_rows, seed=0)[:, 0]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # the split-half ceiling, a set-level mean, is taken over the same sample of images, among themselves
    order = np.random.default_rng(0).permutation(8)
    first, second = (unit_rows(anchor[sample][:, half]) for half in np.array_split(order, 2))
    def near_within(x):
        similarity = x @ x.T
        np.fill_diagonal(similarity, -np.inf)
        return np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    shared = np.array([len(set(a) & set(b)) for a, b in zip(near_within(first), near_within(second))])
    chance = k / (reference_rows - 1)
    expected = np.clip((shared / k - chance) / (1 - chance), 0, None).mean()
    assert split_half_agreement(anchor, k, reference_rows=reference_rows, seed=0) == pytest.approx(expected, abs=1e-6)


def test_trust_is_high_for_a_view_that_sees_what_the_image_sees_and_low_for_an_unrelated_one():
    rng = np.random.default_rng(0)
    # redundant dimensions, as CLIP's: both halves of the embedding see the same 4 factors
    x = unit_rows(rng.normal(size=(400, 4)) @ rng.normal(size=(4, 32)) + 0.05 * rng.normal(size=(400, 32)))
    fusion = fuse({"image": x, "noun": unit_rows(x + 0.02 * rng.normal(size=x.shape)),
                   "caption": unit_rows(rng.normal(size=x.shape))})
    assert fusion.split_half > 0.5
    assert fusion.agreement[:, 1].mean() > 0.9 and fusion.agreement[:, 2].mean() < 0.1
    assert (fusion.weights[:, 2] < fusion.weights[:, 1]).all()


def test_trust_falls_back_towards_the_image_where_equal_weights_fall_below_it():
    # noisy planted images (k-means on them ~0.96) and two text views unrelated to them
    bundle = planted_bundle(n_images=1000, n_classes=10, dim=128, n_nouns=300, n_captions=300, noise=0.9, seed=0)
    rng = np.random.default_rng(0)
    views = {"image": bundle.image_embeddings, "noun": unit_rows(rng.normal(size=(1000, 128))),
             "caption": unit_rows(rng.normal(size=(1000, 128)))}
    image = evaluate(bundle.labels, spherical_kmeans(bundle.image_embeddings, 10, seed=0).labels)["acc"]
    trusted = evaluate(bundle.labels, spherical_kmeans(fuse(views).features, 10, seed=0).labels)["acc"]
    equal = evaluate(bundle.labels, spherical_kmeans(fuse(views, "equal").features, 10, seed=0).labels)["acc"]
    assert equal < image - 0.2  # the failure: unrelated views drag equal weighting far below the image
    assert trusted >= image - 0.05


def test_planted_bundles_have_clips_geometry():
    bundle = planted_bundle(n_images=400, n_classes=8, dim=256, n_nouns=200, n_captions=200, seed=1)
    x, u, v = bundle.image_embeddings, bundle.noun_embeddings, bundle.caption_embeddings
    upper = np.triu_indices(len(x), 1)
    assert 0.58 <= (x @ x.T)[upper].mean() <= 0.70  # real features: ~0.64
    assert 0.50 <= (u @ u.T)[np.triu_indices(len(u), 1)].mean() <= 0.65  # ~0.6
    assert 0.17 <= (x @ u.T).mean() <= 0.30 and 0.17 <= (x @ v.T).mean() <= 0.30  # 0.17-0.21


def test_sinkhorn_warns_and_says_so_when_it_stops_at_its_cap():
    rng = np.random.default_rng(6)
    images, texts = rng.normal(size=(30, 8)), rng.normal(size=(12, 8))
    with pytest.warns(SinkhornConvergenceWarning, match="did not converge"):
        capped = ot_alignment(images, texts, epsilon=0.001, max_iter=3)
    assert not capped.converged and capped.n_iter == 3
    assert ot_alignment(images, texts).converged


def test_softmax_ablation_uses_the_ot_temperature(bundle, all_results):
    result = all_results["cae-softmax"]
    expected = softmax_alignment(bundle.image_embeddings, result.semantic_space.nouns.embeddings,
                                 temperature=CaeConfig().epsilon)
    np.testing.assert_allclose(result.noun_alignment.correspondence, expected.correspondence, atol=1e-6)


@pytest.mark.parametrize("train_size, n_clusters, expected", [
    (50_000, 10, 167), (50_000, 20, 167), (5_000, 10, 17), (13_000, 10, 43), (19_500, 15, 65),
    (3_760, 47, 141), (9_537, 101, 303), (1_281_167, 1000, 4271)])
def test_semantic_space_size_reproduces_tacs_counts(train_size, n_clusters, expected):
    # TAC's code: CIFAR-10, CIFAR-20, STL-10, ImageNet-10, ImageNet-Dogs, DTD, UCF-101, ImageNet-1K
    assert default_n_centres(10**7, n_clusters, train_size) == expected


def test_small_sets_get_three_centres_per_cluster_and_never_more_than_n():
    assert default_n_centres(200, 10) == 30
    assert default_n_centres(20, 10) == 20
    assert default_n_centres(10_000, 10) == 33


def test_options_are_validated_when_the_config_is_made():
    with pytest.raises(CaeError, match="unknown fusion 'sum'"):
        CaeConfig(fusion="sum")
    with pytest.raises(CaeError, match="epsilon must be positive"):
        CaeConfig(epsilon=0)
    with pytest.raises(CaeError, match="n_centres must be a positive integer"):
        CaeConfig(n_centres=0)
    with pytest.raises(CaeError, match="unknown fusion combination"):
        CaeConfig(combine="stack")


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
    assert space.n_centres == default_n_centres(n, 6) == 18  # N/300 = 3 < K: 3K
    assert len(space.nouns) == len(set(space.nouns.bank_index)) and len(space.nouns) <= 5 * space.n_centres
    assert result.noun_alignment.correspondence.shape == (n, 128)
    assert result.noun_alignment.top_text.shape == (n, 10)
    assert np.all(np.diff(result.noun_alignment.top_weight, axis=1) <= 1e-7)
    assert result.fusion.modalities == ("image", "noun", "caption")
    assert set(result.stage_seconds) >= {"semantic_space", "noun_alignment", "caption_alignment", "fusion", "kmeans"}
    # every cluster is named by texts of its own class ("noun 3-17" belongs to class 3)
    for entry in result.cluster_texts:
        members = result.assignments == entry.cluster
        majority = np.bincount(bundle.labels[members]).argmax()
        assert entry.nouns and all(noun.split()[1].split("-")[0] == str(majority) for noun in entry.nouns)


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


def test_laic_notrain_clusters_the_centred_relation_rows(bundle, all_results):
    result = all_results["laic-notrain"]
    selected = result.semantic_space.nouns.embeddings
    relation = bundle.image_embeddings @ selected.T
    centred = relation - relation.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(result.features, centred / np.linalg.norm(centred, axis=1, keepdims=True), atol=1e-5)
    assert result.features.shape == (bundle.n_images, len(selected))
    assert result.fusion is None and not result.aligned  # no alignment: the relations are the representation
    assert "relation" in result.stage_seconds
