"""``bench --scale`` (issue 14): one row per N with seconds and peak memory per stage, and the growth."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import cae_core.method.alignment as alignment_module
from cae_core.benchmarks import SCALE_STAGES, growth_exponents, pot_correspondence
from cae_core.cli import main
from cae_core.arrays import unit_rows
from cae_core.inputs.synthetic import planted_bundle
from cae_core.method.alignment import ot_alignment


def test_bench_scale_json_has_a_row_per_size_with_every_stage(capsys):
    # one small size keeps the test short (each size is a fresh interpreter); growth is tested below
    assert main(["bench", "--scale", "--quick", "--sizes", "450", "--space-size", "3000", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["n_images"] for row in report["rows"]] == [450]
    for row in report["rows"]:
        assert (row["n_clusters"], row["n_centres"], row["noun_bank"], row["caption_bank"]) == (100, 427, 14634, 15507)
        # the stages are disjoint parts of the run: their times add up to at most the run's (each figure is
        # rounded to 0.01 s, hence the slack); a stage timed twice or timed around the whole run breaks this
        slack = 0.005 * (len(SCALE_STAGES) + 1)
        assert sum(row[f"{stage}_s"] for stage in SCALE_STAGES) <= row["cae_total_s"] + slack
        assert sum(row[f"{stage}_cpu_s"] for stage in SCALE_STAGES) <= row["cae_cpu_s"] + slack
        for stage in SCALE_STAGES:
            assert row[f"{stage}_peak_gib"] > 0  # sampled resident memory (Linux)
        assert row["peak_gib"] >= max(row[f"{stage}_peak_gib"] for stage in SCALE_STAGES) - 0.01
        assert row["selected_nouns"] > 0 and len(row["sinkhorn_iterations"]) == 2 and row["cae_cpu_s"] > 0
    assert set(report["growth_exponent"]) >= {"cae_total_s", "peak_gib", *(f"{s}_s" for s in SCALE_STAGES)}
    space = report["space"]  # the semantic space made from a 3,000-image training split
    assert (space["space_train_images"], space["space_images"], space["space_centres"]) == (3000, 5000, 427)
    assert space["space_s"] > 0 and space["space_peak_gib"] > 0 and space["space_selected_nouns"] > 0


def test_bench_scale_refuses_sizes_below_k_and_sizes_without_scale(capsys):
    assert main(["bench", "--scale", "--quick", "--sizes", "50", "--json"]) == 2
    assert "at least K = 100" in capsys.readouterr().err
    assert main(["bench", "--sizes", "5000"]) == 2
    assert main(["bench", "--space-size", "5000"]) == 2


def test_growth_exponent_is_the_log_log_slope():
    rows = [{"n_images": n, "cae_total_s": 2e-3 * n, "peak_gib": 1.0,
             **{f"{s}_s": 1e-6 * n ** 2 for s in SCALE_STAGES}, **{f"{s}_peak_gib": 1.0 for s in SCALE_STAGES}}
            for n in (1000, 4000, 16000)]
    fitted = growth_exponents(rows)
    assert fitted["cae_total_s"] == pytest.approx(1.0) and fitted["kmeans_s"] == pytest.approx(2.0)
    assert fitted["peak_gib"] == 0.0
    assert growth_exponents(rows[:1])["cae_total_s"] is None


def test_sinkhorns_single_pass_per_iteration_matches_between_whole_and_blocked_kernels(monkeypatch):
    bundle = planted_bundle(n_images=700, n_classes=5, dim=32, n_nouns=300, n_captions=10, seed=2)
    whole = ot_alignment(bundle.image_embeddings, bundle.noun_embeddings, device="cpu")
    monkeypatch.setattr(alignment_module, "MEMORY_BUDGET_BYTES", 1024)
    monkeypatch.setattr("cae_core.arrays.BLOCK_BYTES", 300 * 4 * 64)  # 64 rows per block
    blocked = ot_alignment(bundle.image_embeddings, bundle.noun_embeddings, device="cpu")
    assert blocked.n_iter == whole.n_iter
    np.testing.assert_allclose(blocked.correspondence, whole.correspondence, atol=1e-5)
    np.testing.assert_allclose(blocked.text_usage, whole.text_usage, atol=1e-6)


def _kernel_kind(monkeypatch, images: np.ndarray, texts: np.ndarray, budget: int) -> str:
    """Which form ``_LogKernel`` keeps the kernel in under ``budget`` bytes."""
    monkeypatch.setattr(alignment_module, "MEMORY_BUDGET_BYTES", budget)
    kernel = alignment_module._LogKernel(torch.as_tensor(images), torch.as_tensor(texts), 0.05, 8192)
    return kernel.form


def test_the_compact_kernel_is_used_only_where_float32_does_not_fit_and_matches_pot(monkeypatch):
    bundle = planted_bundle(n_images=900, n_classes=6, dim=64, n_nouns=400, n_captions=10, seed=3)
    images, texts = bundle.image_embeddings, bundle.noun_embeddings
    size = len(images) * len(texts)
    assert _kernel_kind(monkeypatch, images, texts, 4 * size) == "float32 scaled"
    assert _kernel_kind(monkeypatch, images, texts, 4 * size - 1) == "float16 scaled"
    assert _kernel_kind(monkeypatch, images, texts, 2 * size - 1) == "per block"
    monkeypatch.setattr(alignment_module, "MEMORY_BUDGET_BYTES", 3 * size)
    compact = ot_alignment(images, texts, device="cpu", block_rows=128)  # several blocks
    reference = pot_correspondence(images, texts, 0.05, 1e-6, 2000)
    assert np.abs(compact.correspondence - reference).max() <= 1e-3  # the bound
    assert compact.converged and compact.marginal_error < 1e-6


def test_a_scaled_kernel_is_used_only_where_its_float_type_holds_the_kernels_range(monkeypatch):
    bundle = planted_bundle(n_images=300, n_classes=6, dim=64, n_nouns=100, n_captions=10, seed=4)
    images, texts = (torch.as_tensor(unit_rows(array)) for array in (bundle.image_embeddings, bundle.noun_embeddings))
    size = len(images) * len(texts)
    similarity = images @ texts.T
    spread = float(similarity.max() - similarity.min())
    for budget, limit, scaled, otherwise in (
            (3 * size, alignment_module.COMPACT_RANGE, "float16 scaled", "per block"),
            (4 * size, alignment_module.FLOAT32_RANGE, "float32 scaled", "float32 log")):
        monkeypatch.setattr(alignment_module, "MEMORY_BUDGET_BYTES", budget)
        for epsilon, form in ((spread / (limit - 0.1), scaled), (spread / (limit + 0.1), otherwise)):
            assert alignment_module._LogKernel(images, texts, epsilon, 64).form == form
    # the log-domain float32 kernel, at an eps too small for the scaled one, still matches POT
    epsilon = spread / (alignment_module.FLOAT32_RANGE + 0.1)
    logged = ot_alignment(bundle.image_embeddings, bundle.noun_embeddings, epsilon=epsilon, device="cpu")
    reference = pot_correspondence(bundle.image_embeddings, bundle.noun_embeddings, epsilon, 1e-6, 2000)
    assert np.abs(logged.correspondence - reference).max() <= 1e-3
