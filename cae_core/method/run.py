"""A method end to end on a features bundle: semantic space, alignment per bank, fusion, k-means, metrics."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, TypeVar

import numpy as np

from ..errors import CaeError
from ..inputs.bundle import FeaturesBundle
from ..progress import Progress, no_progress
from .alignment import Alignment, ot_alignment, softmax_alignment
from .clustering import spherical_kmeans
from .fusion import Fusion, fuse
from .methods import DEFAULT_CLUSTERS, METHODS, AlignmentKind, CaeConfig, MethodSpec
from .hierarchy import hierarchy_filter
from .metrics import evaluate
from .relation import relation_features
from .semantic_space import Bank, SemanticSpace, TextSelection, build_semantic_space, default_n_centres

T = TypeVar("T")


@dataclass
class AlignedBank:
    """One bank's part of a run: the texts the semantic space selected and the images' alignment with
    them (``alignment``'s text indices index ``selection``)."""

    bank: Bank
    selection: TextSelection
    alignment: Alignment


@dataclass
class ClusterTexts:
    """A cluster named by the texts its members sent the most mass to, best first."""

    cluster: int
    size: int
    nouns: list[str]
    captions: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ClusteringResult:
    """Everything a run computed, for the CLI's files and the explorer's pages.

    ``assignments`` (N,) cluster per image; ``features`` (N, D) what the final k-means saw;
    ``aligned`` each bank's selection and alignment; ``fusion`` holds per-image modality weights;
    ``cluster_texts`` names each cluster; ``stage_seconds`` times each stage.
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
    aligned: dict[Bank, AlignedBank]
    fusion: Fusion | None
    cluster_texts: list[ClusterTexts]
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def noun_alignment(self) -> Alignment | None:
        return self.aligned[Bank.NOUNS].alignment if Bank.NOUNS in self.aligned else None

    @property
    def caption_alignment(self) -> Alignment | None:
        return self.aligned[Bank.CAPTIONS].alignment if Bank.CAPTIONS in self.aligned else None


def bank_arrays(bundle: FeaturesBundle, bank: Bank) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings (M, d), texts (M,)) of one of the bundle's banks."""
    if bank == Bank.NOUNS:
        return bundle.noun_embeddings, bundle.nouns
    return bundle.caption_embeddings, bundle.captions


def semantic_space_for(bundle: FeaturesBundle, banks: tuple[Bank, ...], n_centres: int, config: CaeConfig,
                       seed: int) -> SemanticSpace:
    """The semantic space a run with ``config`` builds (the explorer rebuilds it for other settings)."""
    if n_centres > bundle.n_images:
        raise CaeError(f"cannot make {n_centres} semantic-space centres from {bundle.n_images} images")
    hierarchy = None
    if config.space == "hierarchy" and Bank.NOUNS in banks:
        hierarchy = hierarchy_filter(bundle.image_embeddings, bundle.noun_embeddings, bundle.noun_synsets,
                                     config.device)
    return build_semantic_space(bundle.image_embeddings, n_centres, {bank: bank_arrays(bundle, bank) for bank in banks},
                                per_centre=config.texts_per_centre, n_init=config.n_init, seed=seed,
                                device=config.device, noun_hierarchy=hierarchy,
                                keep_all=(Bank.CAPTIONS,) if bundle.per_image_captions else ())


def align_bank(image_embeddings: np.ndarray, text_embeddings: np.ndarray, kind: AlignmentKind, config: CaeConfig,
               progress: Callable[[float], None] | None = None) -> Alignment:
    """Align images (N, d) with texts (S, d), usually one bank's selection, as alignment ``kind`` does.

    ``"softmax"`` uses OT's temperature (the ablation compares the two at one temperature, as
    Theorem 1 does); ``"tac"`` is TAC's retrieval at its own tau, without CAE's s_ij factor.
    """
    if kind == "ot":
        return ot_alignment(image_embeddings, text_embeddings, epsilon=config.epsilon, tol=config.sinkhorn_tol,
                            max_iter=config.sinkhorn_max_iter, top_k=config.top_matches, device=config.device,
                            progress=progress)
    temperature = config.epsilon if kind == "softmax" else config.retrieval_tau
    return softmax_alignment(image_embeddings, text_embeddings, temperature=temperature,
                             top_k=config.top_matches, device=config.device, weight_by_similarity=kind == "softmax")


def fuse_for(spec: MethodSpec, config: CaeConfig, image_embeddings: np.ndarray,
             aligned: dict[Bank, AlignedBank]) -> Fusion | None:
    """The method's fusion of the image with its correspondences (None for image-only methods)."""
    if spec.fusion in ("none", "relation"):
        return None
    modalities = {"image": image_embeddings}
    modalities.update({bank.modality: part.alignment.correspondence for bank, part in aligned.items()})
    if spec.fusion == "tac":
        return fuse(modalities, "equal", combine="concat", centre=False)
    weighting = config.fusion if spec.fusion == "adaptive" else "equal"
    return fuse(modalities, weighting, gamma=config.gamma, combine=config.combine, centre=config.fusion == "adaptive")


class _Stages:
    """Times stages and memoises the pieces that several methods share (one bundle, one seed, one config)."""

    def __init__(self, progress: Progress | None):
        self.progress = progress or no_progress
        self.memo: dict = {}

    def shared(self, key, stage: str, compute: Callable[[], T]) -> tuple[T, float]:
        """``compute()`` once per ``key``; (its value, the seconds it took) every time."""
        if key not in self.memo:
            self.memo[key] = self.timed(stage, compute)
        return self.memo[key]

    def timed(self, stage: str, compute: Callable[[], T]) -> tuple[T, float]:
        self.progress(stage, 0.0, f"{stage}…")
        start = time.perf_counter()
        value = compute()
        seconds = time.perf_counter() - start
        self.progress(stage, 1.0, f"{stage} done")
        return value, seconds


def _spec(method: str) -> MethodSpec:
    if method not in METHODS:
        raise CaeError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return METHODS[method]


def _check_request(bundle: FeaturesBundle, method: str, n_clusters: int) -> MethodSpec:
    spec = _spec(method)
    if not isinstance(n_clusters, (int, np.integer)) or n_clusters < 1:
        raise CaeError(f"the number of clusters must be a positive integer, got {n_clusters!r}")
    if n_clusters > bundle.n_images:
        raise CaeError(f"cannot make {n_clusters} clusters from {bundle.n_images} images")
    return spec


@dataclass
class Representation:
    """What a method makes of the images before its final k-means (``features`` (N, D)), with the
    pieces that made it and the seconds each stage took."""

    features: np.ndarray
    semantic_space: SemanticSpace | None
    aligned: dict[Bank, AlignedBank]
    fusion: Fusion | None
    stage_seconds: dict[str, float]


def _represent(bundle: FeaturesBundle, spec: MethodSpec, n_centres: int, config: CaeConfig, seed: int,
               stages: _Stages) -> Representation:
    seconds: dict[str, float] = {}
    x = bundle.image_embeddings
    space = None
    aligned: dict[Bank, AlignedBank] = {}
    if spec.banks:
        space, seconds["semantic_space"] = stages.shared(
            ("space", n_centres), "semantic space",
            lambda: semantic_space_for(bundle, tuple(Bank), n_centres, config, seed))
    for bank in spec.banks if spec.fusion != "relation" else ():
        stage = f"{bank.modality} alignment"
        selection = space.selections[bank]
        alignment, seconds[f"{bank.modality}_alignment"] = stages.shared(
            (bank, spec.alignment, space.n_centres), stage,
            lambda: align_bank(x, selection.embeddings, spec.alignment, config,
                               lambda fraction: stages.progress(stage, fraction, "Sinkhorn")))
        aligned[bank] = AlignedBank(bank, selection, alignment)

    if spec.fusion == "relation":
        fusion = None
        features, seconds["relation"] = stages.timed("relation", lambda: relation_features(
            x, space.selections[spec.banks[0]].embeddings, config.device))
    else:
        fusion, seconds["fusion"] = stages.timed("fusion", lambda: fuse_for(spec, config, x, aligned))
        features = x if fusion is None else fusion.features
    return Representation(features, space, aligned, fusion, seconds)


def _run(bundle: FeaturesBundle, spec: MethodSpec, n_clusters: int, config: CaeConfig, seed: int,
         stages: _Stages) -> ClusteringResult:
    n_centres = config.n_centres or default_n_centres(bundle.n_images, n_clusters, config.train_size)
    made = _represent(bundle, spec, n_centres, config, seed, stages)
    seconds = made.stage_seconds
    kmeans, seconds["kmeans"] = stages.timed("clustering", lambda: spherical_kmeans(
        made.features, n_clusters, n_init=config.n_init, max_iter=config.kmeans_max_iter, seed=seed,
        device=config.device))
    start = time.perf_counter()
    metrics = evaluate(bundle.labels, kmeans.labels) if bundle.has_labels else {}
    seconds["metrics"] = time.perf_counter() - start
    texts = cluster_texts(kmeans.labels, n_clusters, made.aligned)
    return ClusteringResult(spec.name, n_clusters, seed, config, kmeans.labels, made.features, bundle.labels,
                            metrics, made.semantic_space, made.aligned, made.fusion, texts, seconds)


def represent(bundle: FeaturesBundle, method: str = "cae", n_centres: int | None = None, *,
              config: CaeConfig | None = None, seed: int = 0, progress: Progress | None = None) -> Representation:
    """The features ``method`` would cluster (everything before its final k-means).

    ``n_centres`` sizes the semantic space (``config.n_centres`` when None; required when the config
    leaves it to the rule, since that rule depends on K). Used to choose K before clustering.
    """
    spec = _spec(method)
    config = config or CaeConfig()
    n_centres = n_centres or config.n_centres
    if spec.banks and not n_centres:
        raise CaeError("the semantic space's size depends on K: give n_centres when K is not known")
    return _represent(bundle, spec, int(n_centres or 0), config, seed, _Stages(progress))


def run_method(bundle: FeaturesBundle, method: str = "cae", n_clusters: int = DEFAULT_CLUSTERS, *,
               config: CaeConfig | None = None, seed: int = 0, progress: Progress | None = None) -> ClusteringResult:
    """Run one method on ``bundle`` and return every intermediate. Same inputs and seed → same result."""
    spec = _check_request(bundle, method, n_clusters)
    return _run(bundle, spec, n_clusters, config or CaeConfig(), seed, _Stages(progress))


def run_methods(bundle: FeaturesBundle, methods: list[str] | tuple[str, ...] = tuple(METHODS),
                n_clusters: int = DEFAULT_CLUSTERS, *, config: CaeConfig | None = None, seed: int = 0,
                progress: Progress | None = None) -> dict[str, ClusteringResult]:
    """Run several methods on the same bundle, computing shared stages (semantic space, alignments) once."""
    specs = [_check_request(bundle, method, n_clusters) for method in methods]
    stages = _Stages(progress)
    return {spec.name: _run(bundle, spec, n_clusters, config or CaeConfig(), seed, stages) for spec in specs}


def cluster_texts(assignments: np.ndarray, n_clusters: int, aligned: dict[Bank, AlignedBank],
                  n_texts: int = 5) -> list[ClusterTexts]:
    """Name each cluster (ids 0..n_clusters-1; -1 in ``assignments`` is no cluster) by the texts that
    received the most mass from its members, best first.

    Mass is summed over the members' top matches (the rest of each row is negligible at the
    engine's temperatures) and over rows that carry the same text.
    """
    named = []
    for cluster in range(n_clusters):
        members = assignments == cluster
        words: dict[Bank, list[str]] = {bank: [] for bank in Bank}
        for bank, part in aligned.items():
            if not members.any():
                continue
            alignment, selection = part.alignment, part.selection
            mass = np.bincount(alignment.top_text[members].ravel(), weights=alignment.top_weight[members].ravel(),
                               minlength=len(selection))
            # one name per text: the senses of "crane" are separate rows with the same lemma
            names, row_name = np.unique(selection.texts, return_inverse=True)
            name_mass = np.bincount(row_name, weights=mass, minlength=len(names))
            best = np.argsort(-name_mass, kind="stable")[:n_texts]
            words[bank] = [str(names[j]) for j in best if name_mass[j] > 0]
        named.append(ClusterTexts(cluster, int(members.sum()), words[Bank.NOUNS], words[Bank.CAPTIONS]))
    return named
