"""A method end to end on a features bundle: semantic space, alignment per bank, fusion, k-means, metrics."""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Callable, TypeVar

import numpy as np

from ..arrays import unit_rows
from ..errors import CaeError
from ..inputs.bundle import FeaturesBundle, load_bundle
from ..progress import Progress, no_progress
from .alignment import Alignment, ot_alignment, softmax_alignment
from .clustering import spherical_kmeans
from .fusion import Fusion, fuse
from .methods import DEFAULT_CLUSTERS, METHODS, AlignmentPart, CaeConfig, Fused, ImageOnly, MethodSpec, \
    RelationRows, Softmax, Transport
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


@lru_cache(maxsize=1)  # a sweep's grid points share one load of a (possibly 1.28 M-image) bundle
def _load_space_bundle(path: str, modified: float) -> FeaturesBundle:
    return load_bundle(path)


def space_images_for(bundle: FeaturesBundle, config: CaeConfig) -> np.ndarray:
    """The images the semantic space is made from: those of ``config.space_from`` (checked to share
    ``bundle``'s d and text banks), else ``bundle``'s own."""
    if config.space_from is None:
        return bundle.image_embeddings
    path = Path(config.space_from)
    if not path.is_file():
        raise CaeError(f"--space-from bundle not found: {path}")
    space = _load_space_bundle(str(path.resolve()), path.stat().st_mtime)
    if space.image_embeddings.shape[1] != bundle.image_embeddings.shape[1]:
        raise CaeError(f"--space-from {path} has d = {space.image_embeddings.shape[1]}, the clustered bundle "
                       f"d = {bundle.image_embeddings.shape[1]}: encode both with the same model")
    for bank in Bank:
        (space_embeddings, space_texts), (embeddings, texts) = bank_arrays(space, bank), bank_arrays(bundle, bank)
        if not (np.array_equal(space_texts, texts) and np.array_equal(space_embeddings, embeddings)):
            raise CaeError(f"--space-from {path} has other {bank.value} than the clustered bundle: "
                           "both must carry the same text banks")
    return space.image_embeddings


def semantic_space_for(bundle: FeaturesBundle, banks: tuple[Bank, ...], n_centres: int, config: CaeConfig,
                       seed: int) -> SemanticSpace:
    """The semantic space a run with ``config`` builds (the explorer rebuilds it for other settings)."""
    source = space_images_for(bundle, config)
    if n_centres > len(source):
        raise CaeError(f"cannot make {n_centres} semantic-space centres from {len(source)} images")
    hierarchy = None
    if config.space == "hierarchy" and Bank.NOUNS in banks:
        hierarchy = hierarchy_filter(source, bundle.noun_embeddings, bundle.noun_synsets, config.device)
    return build_semantic_space(bundle.image_embeddings, n_centres, {bank: bank_arrays(bundle, bank) for bank in banks},
                                per_centre=config.texts_per_centre, rule=config.selection, n_init=config.n_init,
                                seed=seed, device=config.device, noun_hierarchy=hierarchy,
                                keep_all=(Bank.CAPTIONS,) if bundle.per_image_captions else (),
                                space_images=None if config.space_from is None else source)


def align_bank(image_embeddings: np.ndarray, text_embeddings: np.ndarray, part: AlignmentPart, config: CaeConfig,
               progress: Callable[[float], None] | None = None) -> Alignment:
    """Align images (N, d) with texts (S, d), usually one bank's selection, as the alignment ``part`` does.

    ``Softmax()`` uses OT's temperature (the ablation compares the two at one temperature, as
    Theorem 1 does); ``Softmax("tac")`` is TAC's retrieval at its own tau, without CAE's s_ij factor.
    """
    if isinstance(part, Transport):
        return ot_alignment(image_embeddings, text_embeddings, epsilon=config.epsilon, tol=config.sinkhorn_tol,
                            max_iter=config.sinkhorn_max_iter, top_k=config.top_matches, device=config.device,
                            progress=progress)
    if isinstance(part, Softmax):
        own_temperature = part.temperature == "epsilon"
        return softmax_alignment(image_embeddings, text_embeddings,
                                 temperature=config.epsilon if own_temperature else config.retrieval_tau,
                                 top_k=config.top_matches, device=config.device, weight_by_similarity=own_temperature)
    raise CaeError(f"{type(part).__name__} does not align with a bank's selection")


def own_caption_view(bundle: FeaturesBundle) -> np.ndarray:
    """(N, d) each image's own captions averaged and normalised (SAC's text view; zero without captions)."""
    if not bundle.per_image_captions:
        raise CaeError("this method needs per-image captions (encode --captions per-image FILE)")
    index = {image_id: i for i, image_id in enumerate(bundle.image_ids)}
    owner = np.array([index.get(image_id, -1) for image_id in bundle.caption_image_ids])
    view = np.zeros_like(bundle.image_embeddings, dtype=np.float32)
    np.add.at(view, owner[owner >= 0], bundle.caption_embeddings[owner >= 0])
    return unit_rows(view)


def text_views(spec: MethodSpec, bundle: FeaturesBundle, aligned: dict[Bank, AlignedBank]) -> dict[str, np.ndarray]:
    """The text views the method fuses with the image (modality -> (N, d)): each aligned bank's
    correspondences, or SAC's own-caption view."""
    if spec.needs_own_captions:
        return {"caption": own_caption_view(bundle)}
    return {bank.modality: part.alignment.correspondence for bank, part in aligned.items()}


def fuse_for(spec: MethodSpec, config: CaeConfig, image_embeddings: np.ndarray, views: dict[str, np.ndarray],
             seed: int) -> Fusion | None:
    """The method's fusion of the image with its text ``views`` (modality -> (N, d)); None when it has none."""
    part = spec.representation
    if not isinstance(part, Fused):
        return None
    modalities = ({"image": image_embeddings} if part.image else {}) | views
    return fuse(modalities, part.weighting or config.fusion, gamma=config.gamma,
                combine=part.combine or config.combine, centre=config.centre if part.centre is None else part.centre,
                neighbours=config.neighbours, seed=seed, device=config.device)


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


def available_methods(bundle: FeaturesBundle) -> tuple[str, ...]:
    """The methods that can run on ``bundle`` (SAC's needs per-image captions)."""
    return tuple(name for name, spec in METHODS.items() if bundle.per_image_captions or not spec.needs_own_captions)


def _check_request(bundle: FeaturesBundle, method: str, n_clusters: int) -> MethodSpec:
    spec = _spec(method)
    if spec.needs_own_captions and not bundle.per_image_captions:
        raise CaeError(f"{method} needs per-image captions (encode --captions per-image FILE); this bundle has none")
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
    for bank in spec.aligned_banks if not spec.needs_own_captions else ():
        stage = f"{bank.modality} alignment"
        selection = space.selections[bank]
        alignment, seconds[f"{bank.modality}_alignment"] = stages.shared(
            (bank, spec.alignment, space.n_centres), stage,
            lambda: align_bank(x, selection.embeddings, spec.alignment, config,
                               lambda fraction: stages.progress(stage, fraction, "Sinkhorn")))
        aligned[bank] = AlignedBank(bank, selection, alignment)

    fusion = None
    if isinstance(spec.representation, RelationRows):
        features, seconds["relation"] = stages.timed("relation", lambda: relation_features(
            x, space.selections[spec.banks[0]].embeddings, config.device))
    elif isinstance(spec.representation, ImageOnly):
        features = x
    else:
        fusion, seconds["fusion"] = stages.timed("fusion", lambda: fuse_for(
            spec, config, x, text_views(spec, bundle, aligned), seed))
        features = fusion.features
    return Representation(features, space, aligned, fusion, seconds)


def _run(bundle: FeaturesBundle, spec: MethodSpec, n_clusters: int, config: CaeConfig, seed: int,
         stages: _Stages) -> ClusteringResult:
    n_centres = config.n_centres or default_n_centres(len(space_images_for(bundle, config)), n_clusters,
                                                      config.train_size)
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


def run_methods(bundle: FeaturesBundle, methods: list[str] | tuple[str, ...] | None = None,
                n_clusters: int = DEFAULT_CLUSTERS, *, config: CaeConfig | None = None, seed: int = 0,
                progress: Progress | None = None) -> dict[str, ClusteringResult]:
    """Run several methods (every one available for the bundle by default) on the same bundle, computing
    shared stages (semantic space, alignments) once."""
    methods = available_methods(bundle) if methods is None else methods
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
