"""Spherical k-means at scale (issue 14): the restart budget, the label tolerance, bounded blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

import cae_core.arrays as arrays
import cae_core.method.clustering as clustering
from cae_core.arrays import rows_per_block, unit_rows
from cae_core.device import resolve_device
from cae_core.errors import CaeError
from cae_core.inputs.synthetic import planted_bundle
from cae_core.method.clustering import n_restarts, spherical_kmeans
from cae_core.method.semantic_space import select_texts


@pytest.fixture(scope="module")
def planted():
    return planted_bundle(n_images=1200, n_classes=8, dim=64, n_nouns=400, n_captions=10, seed=3)


def test_recovers_planted_clusters_and_labels_are_each_rows_nearest_centre(planted):
    result = spherical_kmeans(planted.image_embeddings, 8, seed=0)
    assert adjusted_rand_score(planted.labels, result.labels) > 0.98
    nearest = (unit_rows(planted.image_embeddings) @ result.centres.T).argmax(axis=1)
    np.testing.assert_array_equal(result.labels, nearest)
    np.testing.assert_allclose(np.linalg.norm(result.centres, axis=1), 1, atol=1e-5)


def test_same_seed_same_labels_at_every_bound(planted, monkeypatch):
    first = spherical_kmeans(planted.image_embeddings, 20, seed=5, n_init=3)
    np.testing.assert_array_equal(first.labels, spherical_kmeans(planted.image_embeddings, 20, seed=5, n_init=3).labels)
    monkeypatch.setattr(clustering, "LABEL_TOL", 0.05)
    monkeypatch.setattr(clustering, "RESTART_BUDGET", 1)
    capped = spherical_kmeans(planted.image_embeddings, 20, seed=5)
    again = spherical_kmeans(planted.image_embeddings, 20, seed=5)
    np.testing.assert_array_equal(capped.labels, again.labels)


def test_automatic_restarts_shrink_only_where_their_work_exceeds_the_budget(planted, monkeypatch):
    assert n_restarts(2500, 10, 1536) == 10  # the real features' runs keep all ten
    assert n_restarts(50_000, 1_000, 1536) == 1  # ImageNet-1K's final k-means
    assert n_restarts(50_000, 1_000, 1536, 3) == 3  # an explicit count is run as asked
    with pytest.raises(CaeError, match="positive integer or 'auto'"):
        n_restarts(10, 2, 4, 0)
    budget = 1200 * 8 * 64 * 2  # two restarts' worth at this size
    monkeypatch.setattr(clustering, "RESTART_BUDGET", budget)
    assert n_restarts(1200, 8, 64) == 2
    # a capped run is the first two restarts of an uncapped one: the same as asking for two
    np.testing.assert_array_equal(spherical_kmeans(planted.image_embeddings, 8, seed=1).labels,
                                  spherical_kmeans(planted.image_embeddings, 8, seed=1, n_init=2).labels)


def test_label_tolerance_stops_early_and_is_exact_convergence_below_its_floor(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 16))  # no structure: Lloyd takes many iterations to settle
    exact = spherical_kmeans(x, 40, n_init=1, seed=0)
    # below 1 / LABEL_TOL rows the tolerance rounds to zero changed rows: labels are a fixed point
    points = torch.nn.functional.normalize(torch.as_tensor(x, dtype=torch.float32), dim=1)
    sums = torch.zeros(40, 16).index_add_(0, torch.as_tensor(exact.labels), points)
    again = (points @ torch.nn.functional.normalize(sums, dim=1).T).argmax(dim=1).numpy()
    np.testing.assert_array_equal(again, exact.labels)
    monkeypatch.setattr(clustering, "LABEL_TOL", 0.01)  # stop once at most 30 rows move
    early = spherical_kmeans(x, 40, n_init=1, seed=0)
    assert early.n_iter < exact.n_iter
    assert early.objective > exact.objective - 0.01
    np.testing.assert_array_equal(early.labels, (unit_rows(x) @ early.centres.T).argmax(axis=1))


def test_blocks_are_bounded_and_do_not_change_results(planted, monkeypatch):
    assert rows_per_block(4271, 65536) == arrays.BLOCK_BYTES // (4 * 4271)
    assert rows_per_block(10, 65536) == 65536 and rows_per_block(10 ** 12, 8) == 1
    whole = spherical_kmeans(planted.image_embeddings, 8, seed=2, n_init=2)
    texts = planted.noun_embeddings
    selection = select_texts(whole.centres, texts, planted.nouns, device="cpu")
    monkeypatch.setattr(arrays, "BLOCK_BYTES", 8 * 4 * 7)  # 7 rows per block of 8 centres
    blocked = spherical_kmeans(planted.image_embeddings, 8, seed=2, n_init=2)
    np.testing.assert_array_equal(blocked.labels, whole.labels)
    small = select_texts(whole.centres, texts, planted.nouns, device="cpu")
    np.testing.assert_array_equal(small.bank_index, selection.bank_index)


def test_selection_keeps_each_centres_most_confident_texts_in_bank_order_on_ties():
    rng = np.random.default_rng(1)
    centres = unit_rows(rng.normal(size=(6, 8)))
    texts = unit_rows(rng.normal(size=(300, 8)))
    texts[50] = texts[10]  # a tie: the earlier bank row comes first
    keep = rng.random(300) > 0.2
    selection = select_texts(centres, texts, np.arange(300).astype(str), per_centre=4, keep=keep, device="cpu")
    # reference: the per-centre loop this replaced
    expected = []
    for centre in range(6):
        members = np.flatnonzero(selection.bank_centre == centre)
        expected.append(members[np.argsort(-selection.bank_score[members], kind="stable")[:4]])
    np.testing.assert_array_equal(selection.bank_index, np.concatenate(expected))
    assert not np.isin(selection.bank_index, np.flatnonzero(~keep)).any()


def test_auto_device_follows_cuda_availability_and_a_missing_gpu_is_a_clear_error(monkeypatch):
    # CUDA is faked present or absent: "auto" must follow it on any machine, GPU or not
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(CaeError, match="'cuda' was asked for but CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(CaeError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")


def test_seeding_from_a_sample_of_the_rows_is_reproducible_and_still_recovers_clusters(planted, monkeypatch):
    monkeypatch.setattr(clustering, "SEED_ROWS", 100)  # 1,200 rows > max(100, 4 * 8): seeds from 100 rows
    sampled = spherical_kmeans(planted.image_embeddings, 8, seed=6, n_init=2)
    assert adjusted_rand_score(planted.labels, sampled.labels) > 0.98
    again = spherical_kmeans(planted.image_embeddings, 8, seed=6, n_init=2)
    np.testing.assert_array_equal(sampled.labels, again.labels)
    generator = torch.Generator().manual_seed(0)
    rows = clustering._seeding_rows(1200, 8, generator)
    assert len(rows) == 100 and len(set(rows.tolist())) == 100
    assert clustering._seeding_rows(100, 8, generator) is None


def test_above_seed_rows_lloyd_runs_in_bfloat16_and_returns_float32_nearest_centres(monkeypatch):
    planted = planted_bundle(n_images=3000, n_classes=30, dim=64, n_nouns=10, n_captions=10, seed=4)
    assigned_dtypes, seeding_dtypes = [], []
    original, original_seeding = clustering._assign, clustering._kmeans_plus_plus
    monkeypatch.setattr(clustering, "_assign", lambda x, *rest: assigned_dtypes.append(x.dtype) or original(x, *rest))
    monkeypatch.setattr(clustering, "_kmeans_plus_plus",
                        lambda *args: seeding_dtypes.append(args[3]) or original_seeding(*args))
    exact = spherical_kmeans(planted.image_embeddings, 30, n_init=1, seed=0)
    assert set(assigned_dtypes) == {torch.float32} and seeding_dtypes == [torch.float32]
    monkeypatch.setattr(clustering, "SEED_ROWS", 2999)
    monkeypatch.setattr(clustering, "_seeding_rows", lambda *args: None)  # k-means++ on every row
    low = spherical_kmeans(planted.image_embeddings, 30, n_init=1, seed=0)
    assert torch.bfloat16 in assigned_dtypes and assigned_dtypes[-1] == torch.float32
    assert seeding_dtypes[-1] == clustering.SEED_DTYPE == torch.float16
    similarity = unit_rows(planted.image_embeddings) @ low.centres.T
    np.testing.assert_array_equal(low.labels, similarity.argmax(axis=1))
    assert low.objective == pytest.approx(similarity.max(axis=1).mean(), abs=1e-6)
    assert adjusted_rand_score(planted.labels, low.labels) > 0.9 and low.n_iter < exact.n_iter + 10
    monkeypatch.setattr(clustering, "OBJECTIVE_TOL", 1.0)  # any gain is too small: stop after the second assignment
    assert spherical_kmeans(planted.image_embeddings, 30, n_init=1, seed=0).n_iter == 2


def test_bench_compares_with_faiss_when_installed_and_says_none_without_it(monkeypatch):
    import sys

    from cae_core.benchmarks import kmeans_against_faiss

    pytest.importorskip("faiss")  # requirements-test.txt installs it
    with_faiss = kmeans_against_faiss(600, 6, dim=32)
    assert with_faiss["kmeans_faiss_cpu_s"] >= 0 and with_faiss["kmeans_faiss_equal_iterations_objective"] > 0.5
    assert abs(with_faiss["kmeans_objective_minus_faiss"]) < 0.05
    monkeypatch.setitem(sys.modules, "faiss", None)  # hidden: import faiss raises ImportError
    without = kmeans_against_faiss(600, 6, dim=32)
    assert without["kmeans_faiss_cpu_s"] is None and without["kmeans_speed_vs_faiss"] is None and without["kmeans_ours_objective"] == with_faiss["kmeans_ours_objective"]
