"""CAE end to end on a features bundle, with its baselines and ablations, selectable by name."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Literal, get_args

import numpy as np

from .alignment import EPSILON, RETRIEVAL_TAU, SINKHORN_MAX_ITER, SINKHORN_TOL, TOP_MATCHES, Alignment, \
    ot_alignment, softmax_alignment
from .bundle import FeaturesBundle
from .clustering import spherical_kmeans
from .errors import CaeError
from .fusion import GAMMA, Combine, Fusion, check_fusion_options, fuse
from .metrics import evaluate
from .semantic_space import TEXTS_PER_CENTRE, SemanticSpace, build_semantic_space, default_n_centres

Progress = Callable[[str, float, str], None]
"""``progress(stage, fraction, message)``: fraction in [0, 1] of the stage named."""


AlignmentKind = Literal["ot", "softmax", "tac"]
MethodFusion = Literal["adaptive", "equal", "tac", "none"]
FusionChoice = Literal["adaptive", "paper"]
FUSION_CHOICES: tuple[str, ...] = get_args(FusionChoice)


@dataclass(frozen=True)
class MethodSpec:
    """What a method does: which text sources it aligns, how, and how it fuses.

    ``alignment``: ``"ot"`` (CAE), ``"softmax"`` (CAE's formula with softmax weights at OT's
    temperature: the ablation) or ``"tac"`` (TAC's retrieval, tau = 0.005). ``fusion``:
    ``"adaptive"`` (the run's ``CaeConfig.fusion``), ``"equal"`` (equal weights, otherwise as
    adaptive), ``"tac"`` (TAC's plain concatenation of raw modalities) or ``"none"`` (image only).
    """

    name: str
    description: str
    nouns: bool = False
    captions: bool = False
    alignment: AlignmentKind = "ot"
    fusion: MethodFusion = "adaptive"

    def __post_init__(self) -> None:
        if self.alignment not in get_args(AlignmentKind):
            raise CaeError(f"method {self.name!r}: unknown alignment {self.alignment!r}")
        if self.fusion not in get_args(MethodFusion):
            raise CaeError(f"method {self.name!r}: unknown fusion {self.fusion!r}")


METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("cae", "CAE: OT-aligned nouns and captions, adaptive fusion", True, True),
    MethodSpec("clip-kmeans", "k-means on the CLIP image embeddings", fusion="none"),
    MethodSpec("tac-notrain", "TAC without training: softmax-retrieved nouns concatenated with the image",
               nouns=True, alignment="tac", fusion="tac"),
    MethodSpec("cae-no-captions", "CAE without captions", nouns=True),
    MethodSpec("cae-no-nouns", "CAE without nouns", captions=True),
    MethodSpec("cae-softmax", "CAE with softmax retrieval at OT's temperature instead of OT", True, True,
               alignment="softmax"),
    MethodSpec("cae-concat", "CAE with equal-weight concatenation instead of adaptive fusion", True, True,
               fusion="equal"),
)}


@dataclass
class CaeConfig:
    """Settings of a run, validated on construction (``CaeError`` names the bad one).

    Stated by CAE: n = N/300 centres, Sinkhorn OT, gamma = 0.01. From TAC's public code: N is the
    training split's (``train_size``), 3K centres where N/300 < K, 5 texts per centre, tau = 0.005
    (``retrieval_tau``, used by ``tac-notrain`` only). Inferred here, with the measurement that chose
    each in its module: ``epsilon`` (alignment.py), the gap-free ``fusion`` and ``combine``
    (fusion.py), k-means restarts. ``fusion="paper"`` is CAE's fusion formula as written.
    """

    n_centres: int | None = None  # None: default_n_centres(N, K, train_size)
    train_size: int | None = None  # the training split's size, as TAC sizes the semantic space
    texts_per_centre: int = TEXTS_PER_CENTRE
    epsilon: float = EPSILON
    sinkhorn_tol: float = SINKHORN_TOL
    sinkhorn_max_iter: int = SINKHORN_MAX_ITER
    retrieval_tau: float = RETRIEVAL_TAU
    gamma: float = GAMMA
    fusion: FusionChoice = "adaptive"
    combine: Combine = "concat"
    n_init: int = 10
    kmeans_max_iter: int = 300
    top_matches: int = TOP_MATCHES
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("n_centres", "train_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                raise CaeError(f"{name} must be a positive integer or None, got {value!r}")
        for name in ("texts_per_centre", "sinkhorn_max_iter", "n_init", "kmeans_max_iter", "top_matches"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise CaeError(f"{name} must be a positive integer, got {value!r}")
        for name in ("epsilon", "sinkhorn_tol", "retrieval_tau"):
            if not getattr(self, name) > 0:
                raise CaeError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.fusion not in FUSION_CHOICES:
            raise CaeError(f"unknown fusion {self.fusion!r}; choose one of {', '.join(FUSION_CHOICES)}")
        check_fusion_options("adaptive", self.combine, self.gamma)


@dataclass
class ClusteringResult:
    """Everything a run computed, for the CLI's files and the explorer's pages.

    ``assignments`` (N,) cluster per image; ``features`` (N, D) what the final k-means saw;
    ``noun_alignment`` / ``caption_alignment`` index into ``semantic_space.nouns`` / ``.captions``;
    ``fusion`` holds per-image modality weights; ``cluster_texts`` names each cluster by its
    members' texts with the most mass; ``stage_seconds`` times each stage.
    """

    method: str
    n_clusters: int
    seed: int
    config: CaeConfig
    assignments: np.ndarray
    features: np.ndarray
    labels: np.ndarray | None
    metrics: dict[str, float]
    semantic_space: SemanticSpace | None
    noun_alignment: Alignment | None
    caption_alignment: Alignment | None
    fusion: Fusion | None
    cluster_texts: list[dict]
    stage_seconds: dict[str, float] = field(default_factory=dict)


class _Stages:
    """Times stages and memoises the pieces that several methods share (one bundle, one seed)."""

    def __init__(self, progress: Progress | None):
        self.progress = progress or (lambda stage, fraction, message: None)
        self.memo: dict = {}
        self.seconds: dict[str, float] = {}

    def get(self, key, stage: str, compute: Callable[[], object]):
        if key not in self.memo:
            self.progress(stage, 0.0, f"{stage}…")
            start = time.perf_counter()
            self.memo[key] = compute()
            self.seconds[key] = time.perf_counter() - start
            self.progress(stage, 1.0, f"{stage} done")
        return self.memo[key], self.seconds[key]


def _check_request(bundle: FeaturesBundle, method: str, n_clusters: int) -> MethodSpec:
    if method not in METHODS:
        raise CaeError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not isinstance(n_clusters, (int, np.integer)) or n_clusters < 1:
        raise CaeError(f"the number of clusters must be a positive integer, got {n_clusters!r}")
    if n_clusters > bundle.n_images:
        raise CaeError(f"cannot make {n_clusters} clusters from {bundle.n_images} images")
    return METHODS[method]


def _run(bundle: FeaturesBundle, spec: MethodSpec, n_clusters: int, config: CaeConfig, seed: int,
         stages: _Stages) -> ClusteringResult:
    seconds: dict[str, float] = {}
    x = bundle.image_embeddings
    space = None
    if spec.nouns or spec.captions:
        n_centres = config.n_centres or default_n_centres(bundle.n_images, n_clusters, config.train_size)
        if n_centres > bundle.n_images:
            raise CaeError(f"cannot make {n_centres} semantic-space centres from {bundle.n_images} images")
        space, seconds["semantic_space"] = stages.get(
            ("space", n_centres), "semantic space", lambda: build_semantic_space(
                x, n_centres, noun_embeddings=bundle.noun_embeddings, nouns=bundle.nouns,
                caption_embeddings=bundle.caption_embeddings, captions=bundle.captions,
                per_centre=config.texts_per_centre, n_init=config.n_init, seed=seed,
                device=config.device))

    def align(source: str):
        selection = getattr(space, source)
        stage = f"{source[:-1]} alignment"
        if spec.alignment == "ot":
            def compute():
                return ot_alignment(x, selection.embeddings, epsilon=config.epsilon, tol=config.sinkhorn_tol,
                                    max_iter=config.sinkhorn_max_iter, top_k=config.top_matches,
                                    device=config.device,
                                    progress=lambda fraction: stages.progress(stage, fraction, "Sinkhorn"))
        else:
            def compute():
                # the ablation compares OT with softmax at the same temperature (Theorem 1); TAC uses its tau
                temperature = config.epsilon if spec.alignment == "softmax" else config.retrieval_tau
                return softmax_alignment(x, selection.embeddings, temperature=temperature,
                                         top_k=config.top_matches, device=config.device,
                                         weight_by_similarity=spec.alignment == "softmax")
        alignment, seconds[f"{source[:-1]}_alignment"] = stages.get(
            (source, spec.alignment, space.n_centres), stage, compute)
        return alignment

    noun_alignment = align("nouns") if spec.nouns else None
    caption_alignment = align("captions") if spec.captions else None

    start = time.perf_counter()
    fusion = None
    if spec.fusion == "none":
        features = x
    else:
        modalities = {"image": x}
        if noun_alignment is not None:
            modalities["noun"] = noun_alignment.correspondence
        if caption_alignment is not None:
            modalities["caption"] = caption_alignment.correspondence
        if spec.fusion == "tac":
            fusion = fuse(modalities, "equal", combine="concat", centre=False)
        else:
            weighting = config.fusion if spec.fusion == "adaptive" else "equal"
            fusion = fuse(modalities, weighting, gamma=config.gamma, combine=config.combine,
                          centre=config.fusion == "adaptive")
        features = fusion.features
    seconds["fusion"] = time.perf_counter() - start

    stages.progress("clustering", 0.0, f"k-means into {n_clusters} clusters")
    start = time.perf_counter()
    kmeans = spherical_kmeans(features, n_clusters, n_init=config.n_init, max_iter=config.kmeans_max_iter,
                              seed=seed, device=config.device)
    seconds["kmeans"] = time.perf_counter() - start
    stages.progress("clustering", 1.0, "k-means done")

    start = time.perf_counter()
    metrics = evaluate(bundle.labels, kmeans.labels) if bundle.has_labels else {}
    seconds["metrics"] = time.perf_counter() - start
    texts = cluster_texts(kmeans.labels, n_clusters, space, noun_alignment, caption_alignment)
    return ClusteringResult(spec.name, n_clusters, seed, config, kmeans.labels, features, bundle.labels, metrics,
                            space, noun_alignment, caption_alignment, fusion, texts, seconds)


def run_method(bundle: FeaturesBundle, method: str = "cae", n_clusters: int = 10, *,
               config: CaeConfig | None = None, seed: int = 0, progress: Progress | None = None) -> ClusteringResult:
    """Run one method on ``bundle`` and return every intermediate. Same inputs and seed → same result."""
    spec = _check_request(bundle, method, n_clusters)
    return _run(bundle, spec, n_clusters, config or CaeConfig(), seed, _Stages(progress))


def run_methods(bundle: FeaturesBundle, methods: list[str] | tuple[str, ...] = tuple(METHODS),
                n_clusters: int = 10, *, config: CaeConfig | None = None, seed: int = 0,
                progress: Progress | None = None) -> dict[str, ClusteringResult]:
    """Run several methods on the same bundle, computing shared stages (semantic space, alignments) once."""
    specs = [_check_request(bundle, method, n_clusters) for method in methods]
    stages = _Stages(progress)
    return {spec.name: _run(bundle, spec, n_clusters, config or CaeConfig(), seed, stages) for spec in specs}


def cluster_texts(assignments: np.ndarray, n_clusters: int, space: SemanticSpace | None,
                  noun_alignment: Alignment | None, caption_alignment: Alignment | None,
                  n_texts: int = 5) -> list[dict]:
    """Name each cluster by the texts that received the most mass from its members, best first.

    Mass is summed over the members' top matches (the rest of each row is negligible at the
    engine's temperatures) and over rows that carry the same text. Returns ``[{"cluster", "size", "nouns", "captions"}]`` by cluster id.
    """
    named = []
    for cluster in range(n_clusters):
        members = assignments == cluster
        entry = {"cluster": cluster, "size": int(members.sum()), "nouns": [], "captions": []}
        for key, alignment, selection in (("nouns", noun_alignment, space and space.nouns),
                                          ("captions", caption_alignment, space and space.captions)):
            if alignment is None or not members.any():
                continue
            mass = np.bincount(alignment.top_text[members].ravel(), weights=alignment.top_weight[members].ravel(),
                               minlength=len(selection))
            # one name per text: the senses of "crane" are separate rows with the same lemma
            names, row_name = np.unique(selection.texts, return_inverse=True)
            name_mass = np.bincount(row_name, weights=mass, minlength=len(names))
            best = np.argsort(-name_mass, kind="stable")[:n_texts]
            entry[key] = [str(names[j]) for j in best if name_mass[j] > 0]
        named.append(entry)
    return named

