"""``python -m cae_core bench``: time every stage at a realistic size and compare with references
run in the same process (POT's Sinkhorn for optimal transport, faiss for k-means when installed).

Default size (issue 2): N = 10,000 images, banks of 146,347 nouns and 155,070 captions (WordNet and
Flickr30k sizes), 1,000 selected texts of each kind, d = 512. ``--quick`` shrinks it ~10x.

``bench --scale`` (issue 14): the whole ``cae`` run at growing N with ImageNet-1K's K and semantic
space, each N in a fresh process so that its peak memory is its own; one row per N with the seconds
and peak resident memory of every stage, and the fitted growth (log-log slope) of each.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import ot
import torch

from .errors import CaeError
from .inputs.synthetic import planted_bundle, planted_training_images
from .progress import timed
from .method.alignment import EPSILON, SINKHORN_MAX_ITER, SINKHORN_TOL, ot_alignment
from .method.clustering import n_restarts, spherical_kmeans
from .method.methods import CaeConfig
from .method.run import run_method
from .method.semantic_space import TEXTS_PER_CENTRE, Bank, build_semantic_space

# ImageNet-1K as CAE clusters it: its 50,000 validation images into K = 1,000, with TAC's 4,271
# semantic-space centres (N/300 of the 1.28 M training images); full-size banks, d = 512
SCALE_SIZES = (10_000, 50_000, 200_000)
SPACE_TRAIN_SIZE = 1_281_167  # ImageNet-1K's training split: the semantic space's images in TAC's setting
SCALE_CLUSTERS = 1_000
SCALE_CENTRES = 4_271
SCALE_NOUNS, SCALE_CAPTIONS, SCALE_DIM = 146_347, 155_070, 512
# run_method's stage keys and the names its progress reports them by
SCALE_STAGES = {"semantic_space": "semantic space", "noun_alignment": "noun alignment",
                "caption_alignment": "caption alignment", "fusion": "fusion", "kmeans": "clustering"}
GIB = 2 ** 30


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


def _mean_cosine_to_nearest(x: np.ndarray, centres: np.ndarray) -> float:
    """k-means' objective: the mean cosine of the rows of ``x`` to their most similar centre."""
    from .arrays import unit_rows
    from .method.clustering import nearest_centres

    points, unit_centres = unit_rows(x), unit_rows(centres)
    return float(np.mean(np.sum(points * unit_centres[nearest_centres(points, unit_centres, "cpu")], axis=1)))


def kmeans_against_faiss(n_images: int, n_clusters: int, dim: int = 512, seed: int = 0) -> dict:
    """One restart of our k-means and of faiss-cpu's (``spherical=True``, trained on every row) on the
    same planted rows in this process: CPU seconds and objectives, faiss with its default 25 iterations
    (``kmeans_speed_vs_faiss``: faiss's CPU seconds / ours, > 1 where ours is faster) and with as many
    iterations as ours took (``..._equal_iterations``). The faiss figures are None without faiss."""
    x = planted_bundle(n_images=n_images, n_classes=n_clusters, dim=dim, n_nouns=1, n_captions=1,
                       seed=seed).image_embeddings
    start = time.process_time()
    ours = spherical_kmeans(x, n_clusters, n_init=1, seed=seed)
    record = {"kmeans_n": n_images, "kmeans_k": n_clusters, "kmeans_dim": dim, "kmeans_iterations": ours.n_iter,
              "kmeans_ours_cpu_s": round(time.process_time() - start, 2),
              "kmeans_ours_objective": round(ours.objective, 5),
              **{f"kmeans_{name}": None for name in (
                  "faiss_cpu_s", "faiss_objective", "speed_vs_faiss", "objective_minus_faiss",
                  "faiss_equal_iterations_cpu_s", "faiss_equal_iterations_objective",
                  "speed_vs_faiss_equal_iterations", "objective_minus_faiss_equal_iterations")}}
    try:
        import faiss
    except ImportError:
        return record
    for suffix, iterations in (("", 25), ("_equal_iterations", ours.n_iter)):
        # faiss subsamples 256 points per centroid by default; train on all of them, as ours does
        kmeans = faiss.Kmeans(dim, n_clusters, niter=iterations, nredo=1, spherical=True, seed=seed,
                              max_points_per_centroid=n_images)
        start = time.process_time()
        kmeans.train(np.ascontiguousarray(x, dtype=np.float32))
        seconds = time.process_time() - start
        objective = _mean_cosine_to_nearest(x, kmeans.centroids)
        record[f"kmeans_faiss{suffix}_cpu_s"] = round(seconds, 2)
        record[f"kmeans_faiss{suffix}_objective"] = round(objective, 5)
        record[f"kmeans_speed_vs_faiss{suffix}"] = round(seconds / max(record["kmeans_ours_cpu_s"], 1e-9), 2)
        record[f"kmeans_objective_minus_faiss{suffix}"] = round(ours.objective - objective, 5)
    return record


def _compact_ot_alignment(image_embeddings: np.ndarray, text_embeddings: np.ndarray):
    """``ot_alignment`` with a memory budget that holds the float16 kernel but not the float32 one."""
    from .method import alignment

    saved = alignment.MEMORY_BUDGET_BYTES
    alignment.MEMORY_BUDGET_BYTES = 3 * len(image_embeddings) * len(text_embeddings)
    try:
        return ot_alignment(image_embeddings, text_embeddings)
    finally:
        alignment.MEMORY_BUDGET_BYTES = saved


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
    compact, compact_seconds = timed(_compact_ot_alignment, bundle.image_embeddings, selected)

    # the issue-21 comparison: ImageNet-1K's N and K (a tenth of each with --quick)
    kmeans = kmeans_against_faiss(50_000 // scale, 1_000 // scale)
    log(f"k-means vs faiss: {kmeans}")
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
        # the kernel kept as float16 (the form used where float32's does not fit the memory budget)
        "ot_compact_s": round(compact_seconds, 3),
        "ot_compact_max_abs_diff_vs_pot": float(np.abs(compact.correspondence - reference).max()),
        **kmeans,
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


def _resident_bytes() -> int | None:
    """This process's resident memory now (Linux's /proc; None elsewhere)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class _StageMeter:
    """Samples resident memory every ``interval`` seconds on a thread and keeps the peak of each stage
    (the stage that the last ``progress`` call started); ``cpu`` holds each stage's CPU seconds."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.stage, self.peaks = interval, "setup", {}
        self.cpu: dict[str, float] = {}
        self.cpu_start = 0.0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self.done.wait(self.interval):
            self.record()

    def record(self) -> None:
        rss = _resident_bytes()
        if rss is not None:
            self.peaks[self.stage] = max(self.peaks.get(self.stage, 0), rss)

    def progress(self, stage: str, fraction: float, message: str) -> None:
        if fraction == 0.0:
            self.record()  # the previous stage's last state
            self.stage, self.cpu_start = stage, time.process_time()
        elif fraction == 1.0:  # the last report of a stage is its end
            self.cpu[stage] = time.process_time() - self.cpu_start

    def __enter__(self) -> "_StageMeter":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        self.record()


def _process_peak_bytes() -> int:
    """The peak resident memory of this whole process (ru_maxrss is in KiB on Linux, bytes on macOS)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def scale_row(n_images: int, n_clusters: int, n_centres: int, n_nouns: int, n_captions: int, dim: int,
              seed: int = 0) -> dict:
    """One ``cae`` run on a planted bundle of ``n_images`` (d = ``dim``), in this process: seconds and
    peak resident memory (GiB, sampled every 20 ms) of each stage, ``peak_gib`` the process's peak;
    ``*_cpu_s`` the CPU time over all threads (with other work on the machine, wall time overstates cost)."""
    with _StageMeter() as meter:
        bundle, setup_seconds = timed(planted_bundle, n_images=n_images, n_classes=n_clusters, dim=dim,
                                      n_nouns=n_nouns, n_captions=n_captions, seed=seed)
        config = CaeConfig(n_centres=n_centres)
        cpu_start = time.process_time()
        result, total = timed(run_method, bundle, "cae", n_clusters, config=config, seed=seed,
                              progress=meter.progress)
        cpu_seconds = time.process_time() - cpu_start
    space = result.semantic_space
    peak = _process_peak_bytes()
    row = {"n_images": n_images, "n_clusters": n_clusters, "n_centres": n_centres, "dim": dim,
           "noun_bank": n_nouns, "caption_bank": n_captions,
           "selected_nouns": len(space.nouns), "selected_captions": len(space.captions),
           "sinkhorn_iterations": [result.noun_alignment.n_iter, result.caption_alignment.n_iter],
           "kmeans_restarts": [n_restarts(n_images, n_centres, dim, config.n_init),
                               n_restarts(n_images, n_clusters, result.features.shape[1], config.n_init)],
           "setup_s": round(setup_seconds, 2), "cae_total_s": round(total, 2),
           "cae_cpu_s": round(cpu_seconds, 2),
           "peak_gib": round(peak / GIB, 2), "acc": round(result.metrics["acc"], 4)}
    for key, stage in SCALE_STAGES.items():
        row[f"{key}_s"] = round(result.stage_seconds[key], 2)
        row[f"{key}_cpu_s"] = round(meter.cpu[stage], 2)
    for key, stage in (("setup", "setup"), *SCALE_STAGES.items()):
        row[f"{key}_peak_gib"] = round(meter.peaks[stage] / GIB, 2) if stage in meter.peaks else None
    return row


def space_row(n_train: int, n_images: int, n_classes: int, n_centres: int, n_nouns: int, n_captions: int,
              dim: int, seed: int = 0) -> dict:
    """The semantic space of a planted ``n_images`` bundle made from a planted training split of
    ``n_train`` images (``--space-from``'s path), in this process: seconds, CPU seconds and peak GiB."""
    with _StageMeter() as meter:
        bundle = planted_bundle(n_images=n_images, n_classes=n_classes, dim=dim, n_nouns=n_nouns,
                                n_captions=n_captions, seed=seed)
        train, _ = planted_training_images(n_train, n_classes, dim, seed=seed)
        banks = {Bank.NOUNS: (bundle.noun_embeddings, bundle.nouns),
                 Bank.CAPTIONS: (bundle.caption_embeddings, bundle.captions)}
        meter.progress("space", 0.0, "")
        cpu_start = time.process_time()
        space, seconds = timed(build_semantic_space, bundle.image_embeddings, n_centres, banks, seed=seed,
                               space_images=train)
        cpu_seconds = time.process_time() - cpu_start
        meter.progress("space", 1.0, "")
    peak = _process_peak_bytes()
    return {"space_train_images": n_train, "space_images": n_images, "space_centres": n_centres,
            "space_s": round(seconds, 2), "space_cpu_s": round(cpu_seconds, 2),
            "space_selected_nouns": len(space.nouns), "space_selected_captions": len(space.captions),
            "space_peak_gib": round(peak / GIB, 2),
            "space_inputs_gib": round(meter.peaks.get("setup", 0) / GIB, 2)}


def _in_fresh_process(function: str, **params) -> dict:
    """``benchmarks.<function>(**params)`` in a new interpreter, so that its peak memory is its own."""
    code = (f"import json, sys; from cae_core.benchmarks import {function}; "
            f"print(json.dumps({function}(**json.loads(sys.argv[1]))))")
    package_parent = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (package_parent, os.environ.get("PYTHONPATH"))))}
    done = subprocess.run([sys.executable, "-c", code, json.dumps(params)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise CaeError(f"bench --scale ({function} {params}) failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def growth_exponents(rows: list[dict]) -> dict[str, float | None]:
    """Per stage, the least-squares slope of log(seconds) and of log(peak memory) against log(N):
    1 is linear growth in N. None with fewer than two sizes."""
    keys = ["cae_total_s", "cae_cpu_s", "peak_gib", *(f"{key}_s" for key in SCALE_STAGES),
            *(f"{key}_cpu_s" for key in SCALE_STAGES), *(f"{key}_peak_gib" for key in SCALE_STAGES)]
    sizes = np.log([row["n_images"] for row in rows])
    fitted = {}
    for key in keys:
        values = [row.get(key) for row in rows]
        usable = len(rows) >= 2 and all(value for value in values)
        fitted[key] = round(float(np.polyfit(sizes, np.log(values), 1)[0]), 2) + 0.0 if usable else None  # no -0.0
    return fitted


def scale_benchmark(sizes: tuple[int, ...] | None = None, quick: bool = False, verbose: bool = True,
                    space_train_size: int | None = None) -> dict:
    """``bench --scale``: one row per N (``scale_row``, each in a fresh process), the fitted growth, and
    the semantic space made from a training split of ``space_train_size`` images (``space_row``; default
    ImageNet-1K's 1.28 M, 0 for none) for the ImageNet-size validation set.

    ``sizes`` default ``SCALE_SIZES``; ``quick`` divides them, K, the centres, the banks and the training
    split by 10.
    """
    shrink = 10 if quick else 1
    sizes = tuple(sizes or (n // shrink for n in SCALE_SIZES))
    settings = {"n_clusters": SCALE_CLUSTERS // shrink, "n_centres": round(SCALE_CENTRES / shrink),
                "n_nouns": SCALE_NOUNS // shrink, "n_captions": SCALE_CAPTIONS // shrink, "dim": SCALE_DIM}
    if not sizes or min(sizes) < max(settings["n_clusters"], settings["n_centres"]):
        raise CaeError(f"every size must be at least K = {settings['n_clusters']} and the "
                       f"{settings['n_centres']} centres, got {', '.join(map(str, sizes))}")
    rows = []
    for n_images in sizes:
        rows.append(_in_fresh_process("scale_row", n_images=n_images, **settings))
        if verbose:
            print(f"bench --scale: N={n_images}: {rows[-1]['cae_total_s']} s, peak {rows[-1]['peak_gib']} GiB",
                  file=sys.stderr)
    space_train_size = SPACE_TRAIN_SIZE // shrink if space_train_size is None else space_train_size
    space = None
    if space_train_size:
        space = _in_fresh_process("space_row", n_train=space_train_size, n_images=50_000 // shrink,
                                  n_classes=settings["n_clusters"], n_centres=settings["n_centres"],
                                  n_nouns=settings["n_nouns"], n_captions=settings["n_captions"], dim=SCALE_DIM)
        if verbose:
            print(f"bench --scale: space from {space_train_size} images: {space['space_s']} s, "
                  f"peak {space['space_peak_gib']} GiB", file=sys.stderr)
    return {"machine": platform.machine(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),  # spinning workers cost CPU s (README)
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "rows": rows,
            "growth_exponent": growth_exponents(rows), "space": space}


def scale_table(report: dict) -> str:
    """The rows of ``scale_benchmark`` as a markdown table (wall and CPU seconds, peak GiB per stage),
    then the growth."""
    import pandas as pd

    columns = {"n_images": "N", "semantic_space_s": "space s", "noun_alignment_s": "noun OT s",
               "caption_alignment_s": "caption OT s", "fusion_s": "fusion s", "kmeans_s": "k-means s",
               "cae_total_s": "total s", "semantic_space_cpu_s": "space CPU s", "noun_alignment_cpu_s": "noun OT CPU s",
               "caption_alignment_cpu_s": "caption OT CPU s", "fusion_cpu_s": "fusion CPU s",
               "kmeans_cpu_s": "k-means CPU s",
               "cae_cpu_s": "total CPU s", "semantic_space_peak_gib": "space GiB",
               "noun_alignment_peak_gib": "noun OT GiB", "caption_alignment_peak_gib": "caption OT GiB",
               "kmeans_peak_gib": "k-means GiB", "peak_gib": "peak GiB"}
    table = pd.DataFrame(report["rows"])[list(columns)].rename(columns=columns).to_markdown(index=False)
    growth = ", ".join(f"{key} {value}" for key, value in report["growth_exponent"].items() if value is not None)
    text = f"{table}\n\ngrowth exponents (log-log slope against N): {growth}"
    space = report.get("space")
    if space:
        text += (f"\n\nsemantic space from {space['space_train_images']:,} training images "
                 f"({space['space_centres']:,} centres, {space['space_images']:,} images clustered): "
                 f"{space['space_s']} s, {space['space_cpu_s']} CPU s, peak {space['space_peak_gib']} GiB")
    return text
