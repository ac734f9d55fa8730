"""The engine on a GPU (run by scripts/gpu_check.sh where a device is lent; skipped without CUDA).

Each test runs the same call on the CPU and on CUDA and compares: the paths that only a GPU takes
(cuBLAS products, CUDA's memory budget, bfloat16 on the GPU) must give the CPU's results.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cae_core.method.alignment as alignment_module
from cae_core import CaeConfig, run_method
from cae_core.benchmarks import pot_correspondence
from cae_core.inputs.synthetic import planted_bundle
from cae_core.method.alignment import ot_alignment
from cae_core.method.clustering import spherical_kmeans
from cae_core.method.semantic_space import select_texts

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (scripts/gpu_check.sh)")


@pytest.fixture(scope="module")
def bundle():
    return planted_bundle(n_images=3000, n_classes=12, dim=128, n_nouns=800, n_captions=600, seed=7)


@pytest.mark.parametrize("kernel", ["float32", "float16", "per block"])
def test_sinkhorn_on_cuda_matches_pot_in_each_kernel_form(bundle, monkeypatch, kernel):
    images, texts = bundle.image_embeddings, bundle.noun_embeddings
    size = len(images) * len(texts)
    budget = {"float32": 1 << 40, "float16": 3 * size, "per block": 1024}[kernel]
    monkeypatch.setattr(alignment_module, "MEMORY_BUDGET_BYTES", budget)
    on_gpu = ot_alignment(images, texts, device="cuda", block_rows=512)
    reference = pot_correspondence(images, texts, 0.05, 1e-6, 2000)
    assert np.abs(on_gpu.correspondence - reference).max() <= 1e-3
    assert on_gpu.converged


@pytest.mark.parametrize("n_images", [3000, 12_000])  # float32 Lloyd, and bfloat16 above SEED_ROWS
def test_kmeans_on_cuda_returns_nearest_centres_and_recovers_the_classes(n_images):
    planted = planted_bundle(n_images=n_images, n_classes=12, dim=128, n_nouns=10, n_captions=10, seed=8)
    result = spherical_kmeans(planted.image_embeddings, 12, seed=0, device="cuda")
    unit = planted.image_embeddings / np.linalg.norm(planted.image_embeddings, axis=1, keepdims=True)
    np.testing.assert_array_equal(result.labels, (unit @ result.centres.T).argmax(axis=1))
    cpu = spherical_kmeans(planted.image_embeddings, 12, seed=0, device="cpu")
    assert result.objective == pytest.approx(cpu.objective, abs=2e-3)


def test_text_selection_on_cuda_is_the_cpus(bundle):
    centres = spherical_kmeans(bundle.image_embeddings, 40, seed=0, device="cpu").centres
    on_gpu = select_texts(centres, bundle.noun_embeddings, bundle.nouns, device="cuda")
    on_cpu = select_texts(centres, bundle.noun_embeddings, bundle.nouns, device="cpu")
    np.testing.assert_array_equal(on_gpu.bank_index, on_cpu.bank_index)


def test_a_whole_run_on_cuda_recovers_the_planted_classes_as_the_cpu_does(bundle):
    on_gpu = run_method(bundle, "cae", 12, config=CaeConfig(device="cuda"))
    on_cpu = run_method(bundle, "cae", 12, config=CaeConfig(device="cpu"))
    assert on_gpu.metrics["acc"] > 0.9 and abs(on_gpu.metrics["acc"] - on_cpu.metrics["acc"]) < 0.02


def test_neighbour_agreement_on_cuda_is_the_cpus_two_pass_result(bundle):
    # 500 references among 3,000 images: the CPU searches in two passes (bfloat16, then float32), CUDA in one
    from cae_core.method.fusion import neighbour_agreement
    views = [np.random.default_rng(0).permutation(bundle.image_embeddings)]
    on_cpu = neighbour_agreement(bundle.image_embeddings, views, 10, reference_rows=500, device="cpu")
    on_gpu = neighbour_agreement(bundle.image_embeddings, views, 10, reference_rows=500, device="cuda")
    assert np.mean(on_cpu == on_gpu) > 0.999  # only float32 ties between cuBLAS and the CPU may differ
