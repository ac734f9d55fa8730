"""The methods by name and the settings of a run, validated when they are made."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from ..device import resolve_device
from ..errors import CaeError, is_positive_integer, is_positive_number, is_temperature
from .alignment import EPSILON, RETRIEVAL_TAU, SINKHORN_MAX_ITER, SINKHORN_TOL, TOP_MATCHES
from .clustering import n_restarts
from .fusion import GAMMA, NEIGHBOURS, Combine, check_fusion_options
from .semantic_space import TEXTS_PER_CENTRE, Bank

BOTH = (Bank.NOUNS, Bank.CAPTIONS)
DEFAULT_CLUSTERS = 10  # K where neither the user nor the labels give one
FusionChoice = Literal["agreement", "paper", "equal"]
FUSION_CHOICES: tuple[str, ...] = get_args(FusionChoice)
SpaceChoice = Literal["tac", "hierarchy"]
SPACE_CHOICES: tuple[str, ...] = get_args(SpaceChoice)
SelectionChoice = Literal["confident", "nearest"]
SELECTION_CHOICES: tuple[str, ...] = get_args(SelectionChoice)


# The parts a method is made of: which texts it aligns and how (alignment), how it turns the image and
# its text views into the features it clusters (representation); the semantic space and the final
# spherical k-means are shared by every method. Each part is a small frozen dataclass, so a method is
# one entry of METHODS and run.py never looks at a method's name.

@dataclass(frozen=True)
class Transport:
    """CAE's alignment: entropic OT between the images and one bank's selected texts."""

    key = "ot"


@dataclass(frozen=True)
class Softmax:
    """Softmax retrieval without OT's column constraint. ``temperature``: ``"epsilon"`` (OT's, with
    CAE's s_ij factor: the ablation Theorem 1 compares) or ``"tac"`` (TAC's tau, without the factor)."""

    temperature: Literal["epsilon", "tac"] = "epsilon"

    @property
    def key(self) -> str:
        return "softmax" if self.temperature == "epsilon" else "tac"


@dataclass(frozen=True)
class OwnCaptions:
    """SAC's text view: each image's own captions (a bundle with per-image captions), averaged."""

    key = "own"


@dataclass(frozen=True)
class ImageOnly:
    """The image embeddings as they are."""


@dataclass(frozen=True)
class Fused:
    """The image and its text views fused (fusion.py). ``None`` fields follow the run's ``CaeConfig``
    (``fusion``, ``centre``, ``combine``); ``image=False`` fuses the text views alone."""

    weighting: FusionChoice | None = None
    centre: bool | None = None
    combine: Combine | None = None
    image: bool = True


@dataclass(frozen=True)
class RelationRows:
    """LAIC's representation: each image's centred row of cosines to the selected nouns (relation.py)."""


AlignmentPart = Transport | Softmax | OwnCaptions
RepresentationPart = ImageOnly | Fused | RelationRows


@dataclass(frozen=True)
class MethodSpec:
    """A method: the banks whose selected texts it uses, how it aligns them, how it represents the images.

    ``needs_own_captions``: only for bundles with per-image captions. ``source`` says where it comes from.
    """

    name: str
    description: str
    banks: tuple[Bank, ...] = ()
    alignment: AlignmentPart | None = Transport()
    representation: RepresentationPart = Fused()
    source: str = "CAE (AAAI 2026), ablation"

    def __post_init__(self) -> None:
        if not isinstance(self.alignment, (Transport, Softmax, OwnCaptions, type(None))):
            raise CaeError(f"method {self.name!r}: unknown alignment {self.alignment!r}")
        if not isinstance(self.representation, (ImageOnly, Fused, RelationRows)):
            raise CaeError(f"method {self.name!r}: unknown representation {self.representation!r}")

    @property
    def needs_own_captions(self) -> bool:
        return isinstance(self.alignment, OwnCaptions)

    @property
    def aligned_banks(self) -> tuple[Bank, ...]:
        """The banks whose selection it aligns with the images (none for relation rows)."""
        return self.banks if self.alignment is not None else ()


METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("cae", "CAE: OT-aligned nouns and captions, fused by how far each view can be trusted", BOTH,
               source="CAE (AAAI 2026); weighting inferred, see fusion.py"),
    MethodSpec("clip-kmeans", "k-means on the CLIP image embeddings", alignment=None, representation=ImageOnly(),
               source="baseline"),
    MethodSpec("tac-notrain", "TAC without training: softmax-retrieved nouns concatenated with the image",
               (Bank.NOUNS,), Softmax("tac"), Fused("equal", centre=False, combine="concat"),
               source="TAC (ICML 2024), public code"),
    MethodSpec("laic-notrain", "LAIC without training: each image's row of the image-noun relation matrix",
               (Bank.NOUNS,), None, RelationRows(), source="LAIC (seed 004); C's form inferred, see relation.py"),
    MethodSpec("sac-notrain", "SAC without training: each image's own captions as its text view, weighted by "
               "neighbourhood agreement", (Bank.CAPTIONS,), OwnCaptions(), Fused("agreement"),
               source="SAC (seed 003); training-free reading, see README"),
    MethodSpec("cae-no-captions", "CAE without captions", (Bank.NOUNS,)),
    MethodSpec("cae-no-nouns", "CAE without nouns", (Bank.CAPTIONS,)),
    MethodSpec("cae-text-only", "CAE's noun and caption views without the image", BOTH,
               representation=Fused("equal", image=False)),
    MethodSpec("cae-softmax", "CAE with softmax retrieval at OT's temperature instead of OT", BOTH, Softmax()),
    MethodSpec("cae-concat", "CAE with equal weights instead of trust weights", BOTH, representation=Fused("equal")),
    MethodSpec("cae-paper", "CAE's fusion weights as written: softmax of each view's cosine to the prototype",
               BOTH, representation=Fused("paper"), source="CAE (AAAI 2026), formula as written"),
)}
DEFAULT_METHOD = "cae"
IMAGE_BASELINE = "clip-kmeans"


@dataclass
class CaeConfig:
    """Settings of a run, validated on construction (``CaeError`` names the bad one).

    Stated by CAE: n = N/300 centres, Sinkhorn OT, gamma = 0.01. From TAC's public code: N is the
    training split's (``train_size``), 3K centres where N/300 < K, 5 texts per centre, tau = 0.005
    (``retrieval_tau``, used by ``tac-notrain`` only). Inferred here, with the measurement that chose
    each in its module: ``epsilon`` (alignment.py), the ``"agreement"`` weighting, ``centre``,
    ``combine`` and ``neighbours`` (fusion.py), k-means restarts. ``fusion="paper"`` is CAE's weight
    formula as written (applied to centred views unless ``centre=False``); ``selection="nearest"`` is
    the CAE seed's literal text selection (semantic_space.py).
    """

    n_centres: int | None = None  # None: default_n_centres(N, K, train_size)
    train_size: int | None = None  # the training split's size, as TAC sizes the semantic space
    texts_per_centre: int = TEXTS_PER_CENTRE
    epsilon: float = EPSILON
    sinkhorn_tol: float = SINKHORN_TOL
    sinkhorn_max_iter: int = SINKHORN_MAX_ITER
    retrieval_tau: float = RETRIEVAL_TAU
    gamma: float = GAMMA
    fusion: FusionChoice = "agreement"
    centre: bool = True
    combine: Combine = "concat"
    neighbours: int = NEIGHBOURS
    selection: SelectionChoice = "confident"  # "nearest": the CAE seed's literal top-K per centre
    space: SpaceChoice = "tac"  # "hierarchy": MCA's hierarchy-aware filter on the nouns first (hierarchy.py)
    n_init: int | Literal["auto"] = "auto"  # k-means restarts: "auto" is 10, fewer at ImageNet size (clustering.py)
    kmeans_max_iter: int = 300
    top_matches: int = TOP_MATCHES
    device: str = "auto"
    space_from: str | None = None  # a features bundle whose images make the semantic space (e.g. the training split)

    def __post_init__(self) -> None:
        for name in ("n_centres", "train_size"):
            value = getattr(self, name)
            if value is not None and not is_positive_integer(value):
                raise CaeError(f"{name} must be a positive integer or None, got {value!r}")
        n_restarts(1, 1, 1, self.n_init)  # validates n_init
        for name in ("texts_per_centre", "sinkhorn_max_iter", "kmeans_max_iter", "top_matches", "neighbours"):
            if not is_positive_integer(getattr(self, name)):
                raise CaeError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not is_positive_number(self.sinkhorn_tol):
            raise CaeError(f"sinkhorn_tol must be positive and finite, got {self.sinkhorn_tol!r}")
        for name in ("epsilon", "retrieval_tau"):
            if not is_temperature(getattr(self, name)):
                raise CaeError(f"{name} must be positive and finite (at least 6e-39: 2 / {name} must fit a "
                               f"float32), got {getattr(self, name)!r}")
        if self.space not in SPACE_CHOICES:
            raise CaeError(f"unknown semantic space {self.space!r}; choose one of {', '.join(SPACE_CHOICES)}")
        if self.fusion not in FUSION_CHOICES:
            raise CaeError(f"unknown fusion {self.fusion!r}; choose one of {', '.join(FUSION_CHOICES)}")
        if self.selection not in SELECTION_CHOICES:
            raise CaeError(f"unknown text selection {self.selection!r}; choose one of {', '.join(SELECTION_CHOICES)}")
        if not isinstance(self.centre, (bool, np.bool_)):
            raise CaeError(f"centre must be True or False, got {self.centre!r}")
        check_fusion_options(self.combine, self.gamma)
        if self.space_from is not None and not (isinstance(self.space_from, str) and self.space_from):
            raise CaeError(f"space_from must be the path of a features bundle, got {self.space_from!r}")
        resolve_device(self.device)  # an unknown device, or CUDA where there is none, fails here, not mid-run

