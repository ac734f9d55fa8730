"""``python -m cae_core bench``: time every stage at a realistic size and compare with references
run in the same process (POT's Sinkhorn for optimal transport, faiss for k-means when installed).

Default size (issue 2): N = 10,000 images, banks of 146,347 nouns and 155,070 captions (WordNet and
Flickr30k sizes), 1,000 selected texts of each kind, d = 512. ``--quick`` shrinks it ~10x.
"""

from __future__ import annotations

import platform
import sys
import time

import numpy as np
import ot
import torch

from .inputs.synthetic import planted_bundle
from .progress import timed
from .method.alignment import EPSILON, SINKHORN_MAX_ITER, SINKHORN_TOL, ot_alignment
from .method.clustering import spherical_kmeans
from .method.methods import CaeConfig
from .method.run import run_method
from .method.semantic_space import TEXTS_PER_CENTRE


def pot_correspondence(image_embeddings: np.ndarray, text_embeddings: np.ndarray, epsilon: float,
                       tol: float, max_iter: int) -> np.ndarray:
    """CAE's correspondence computed with POT's log-domain Sinkhorn in float64 (the reference)."""
    images, texts = image_embeddings.astype(np.float64), text_embeddings.astype(np.float64)
    similarity = images @ texts.T
    n, s = similarity.shape
    plan = ot.sinkhorn(np.full(n, 1 / n), np.full(s, 1 / s), 1 - similarity, epsilon,
                       method="sinkhorn_log", stopThr=tol, numItermax=max_iter)
    weights = plan / plan.sum(axis=1, keepdims=True)
    mixed = (weights * similarity) @ texts
    return mixed / np.linalg.norm(mixed, axis=1, keepdims=True)


def _faiss_kmeans_seconds(features: np.ndarray, n_clusters: int, n_init: int) -> float | None:
    try:
        import faiss
    except ImportError:
        return None
    # faiss subsamples 256 points per centroid by default; train on all of them, as the torch k-means does
    kmeans = faiss.Kmeans(features.shape[1], n_clusters, niter=300, nredo=n_init, spherical=True, seed=0,
                          max_points_per_centroid=len(features))
    _, seconds = timed(kmeans.train, np.ascontiguousarray(features, dtype=np.float32))
    return seconds


def run_benchmarks(quick: bool = False, verbose: bool = True) -> dict:
    """Time the stages of ``cae`` and the references; returns one flat, JSON-ready record."""
    scale = 10 if quick else 1
    n_images, n_selected = 10_000 // scale, 1_000 // scale
    bundle = planted_bundle(n_images=n_images, n_classes=200 // scale, dim=512, n_nouns=146_347 // scale,
                            n_captions=155_070 // scale, seed=0)
    # enough centres to select n_selected texts of each kind (some centres win fewer than five);
    # CAE's own rule, N / 300, would give 33 centres here and select about 165
    config = CaeConfig(n_centres=int(1.25 * n_selected / TEXTS_PER_CENTRE))
    log = (lambda message: print(message, file=sys.stderr)) if verbose else (lambda message: None)
    log(f"bench: N={n_images}, banks {len(bundle.nouns)}/{len(bundle.captions)}, {n_selected} selected texts")

    n_clusters = 200 // scale
    result, total = timed(run_method, bundle, "cae", n_clusters, config=config)
    selected = result.semantic_space.nouns.embeddings[:n_selected]
    ours, ours_seconds = timed(ot_alignment, bundle.image_embeddings, selected)
    log(f"torch Sinkhorn: {ours_seconds:.2f}s, {ours.n_iter} iterations")
    reference, pot_seconds = timed(pot_correspondence, bundle.image_embeddings, selected, EPSILON,
                                    SINKHORN_TOL, SINKHORN_MAX_ITER)
    log(f"POT sinkhorn_log (numpy, float64): {pot_seconds:.2f}s")

    _, torch_kmeans_seconds = timed(spherical_kmeans, result.features, n_clusters, n_init=10, seed=0)
    faiss_kmeans_seconds = _faiss_kmeans_seconds(result.features, n_clusters, 10)
    record = {
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "n_images": n_images, "n_clusters": n_clusters, "n_centres": config.n_centres,
        "n_selected_nouns": len(selected),
        "n_selected_captions": len(result.semantic_space.captions),
        "noun_bank": len(bundle.nouns), "caption_bank": len(bundle.captions), "dim": 512,
        "epsilon": EPSILON, "sinkhorn_iterations": ours.n_iter,
        "cae_total_s": round(total, 3),
        **{f"stage_{name}_s": round(seconds, 3) for name, seconds in result.stage_seconds.items()},
        "ot_s": round(ours_seconds, 3), "pot_ot_s": round(pot_seconds, 3),
        "ot_speedup_vs_pot": round(pot_seconds / ours_seconds, 2),
        "ot_max_abs_diff_vs_pot": float(np.abs(ours.correspondence - reference).max()),
        "kmeans_torch_s": round(torch_kmeans_seconds, 3),
        "kmeans_faiss_s": None if faiss_kmeans_seconds is None else round(faiss_kmeans_seconds, 3),
        "acc_on_planted": round(result.metrics["acc"], 4),
    }
    record.update(text_trim_benchmark(quick=quick))
    return record


def text_trim_benchmark(quick: bool = False) -> dict:
    """Time CLIP's text tower on WordNet noun prompts, full 77 tokens against trimmed, same batches.

    ViT-B-32 with random weights (the paper's architecture; timing does not depend on the weights),
    batches of 256 prompts ("itap of a {}." on randomly drawn nouns), CPU unless CUDA is present.
    """
    import torch

    from .inputs.corpora import TAC_TEMPLATES, wordnet_nouns
    from .inputs.encoders import encode_text_trimmed, load_clip

    torch.manual_seed(0)
    clip = load_clip("ViT-B-32", None, "auto")
    words = wordnet_nouns().words
    n_batches, batch_size = (1, 256) if quick else (4, 256)
    drawn = np.random.default_rng(0).choice(len(words), n_batches * batch_size, replace=False)
    tokens = clip.tokenizer([TAC_TEMPLATES[0].format(word) for word in words[drawn]]).to(clip.device)
    # encode_texts also sorts texts by length, so that each trimmed batch is as short as its texts
    by_length = torch.argsort(tokens.argmax(dim=-1), stable=True)
    timings, outputs = {}, {}
    with torch.inference_mode():
        for name, encode, order in (("full", clip.model.encode_text, slice(None)),
                                    ("trimmed", lambda t: encode_text_trimmed(clip.model, t), slice(None)),
                                    ("sorted", lambda t: encode_text_trimmed(clip.model, t), by_length)):
            encode(tokens[:8])  # warm-up
            start = time.perf_counter()
            outputs[name] = torch.cat([encode(batch) for batch in tokens[order].split(batch_size)]).float()
            if clip.device.type == "cuda":
                torch.cuda.synchronize()
            timings[name] = time.perf_counter() - start
    lengths = (tokens.argmax(dim=-1) + 1).float()
    return {"text_trim_speedup": round(timings["full"] / timings["trimmed"], 2),
            "text_trim_max_abs_diff": float((outputs["full"] - outputs["trimmed"]).abs().max()),
            "text_trim_sorted_speedup": round(timings["full"] / timings["sorted"], 2),
            "text_trim_prompts": len(tokens), "text_trim_batch_size": batch_size,
            "text_trim_full_s": round(timings["full"], 3), "text_trim_trimmed_s": round(timings["trimmed"], 3),
            "text_trim_mean_tokens": round(float(lengths.mean()), 1), "text_trim_device": clip.device.type}
