"""The methods by name and the settings of a run, validated when they are made."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from ..device import resolve_device
from ..errors import CaeError, is_positive_integer, is_positive_number, is_temperature
from .alignment import EPSILON, RETRIEVAL_TAU, SINKHORN_MAX_ITER, SINKHORN_TOL, TOP_MATCHES
from .clustering import n_restarts
from .fusion import GAMMA, Combine, check_fusion_options
from .semantic_space import TEXTS_PER_CENTRE, Bank

BOTH = (Bank.NOUNS, Bank.CAPTIONS)
DEFAULT_CLUSTERS = 10  # K where neither the user nor the labels give one
AlignmentKind = Literal["ot", "softmax", "tac"]
MethodFusion = Literal["adaptive", "equal", "tac", "relation", "none"]
FusionChoice = Literal["adaptive", "paper"]
FUSION_CHOICES: tuple[str, ...] = get_args(FusionChoice)
SpaceChoice = Literal["tac", "hierarchy"]
SPACE_CHOICES: tuple[str, ...] = get_args(SpaceChoice)


@dataclass(frozen=True)
class MethodSpec:
    """What a method does: which text sources it aligns, how, and how it fuses.

    ``alignment``: ``"ot"`` (CAE), ``"softmax"`` (CAE's formula with softmax weights at OT's
    temperature: the ablation) or ``"tac"`` (TAC's retrieval, tau = 0.005). ``fusion``:
    ``"adaptive"`` (the run's ``CaeConfig.fusion``), ``"equal"`` (equal weights, otherwise as
    adaptive), ``"tac"`` (TAC's plain concatenation of raw modalities), ``"relation"`` (no alignment:
    the images' relation rows to the selected texts, LAIC's representation) or ``"none"`` (image only).
    ``source`` says where the method comes from.
    """

    name: str
    description: str
    banks: tuple[Bank, ...] = ()
    alignment: AlignmentKind = "ot"
    fusion: MethodFusion = "adaptive"
    source: str = "CAE (AAAI 2026), ablation"

    def __post_init__(self) -> None:
        if self.alignment not in get_args(AlignmentKind):
            raise CaeError(f"method {self.name!r}: unknown alignment {self.alignment!r}")
        if self.fusion not in get_args(MethodFusion):
            raise CaeError(f"method {self.name!r}: unknown fusion {self.fusion!r}")


METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("cae", "CAE: OT-aligned nouns and captions, adaptive fusion", BOTH, source="CAE (AAAI 2026)"),
    MethodSpec("clip-kmeans", "k-means on the CLIP image embeddings", fusion="none", source="baseline"),
    MethodSpec("tac-notrain", "TAC without training: softmax-retrieved nouns concatenated with the image",
               (Bank.NOUNS,), alignment="tac", fusion="tac", source="TAC (ICML 2024), public code"),
    MethodSpec("laic-notrain", "LAIC without training: each image's row of the image-noun relation matrix",
               (Bank.NOUNS,), fusion="relation", source="LAIC (seed 004); C's form inferred, see relation.py"),
    MethodSpec("cae-no-captions", "CAE without captions", (Bank.NOUNS,)),
    MethodSpec("cae-no-nouns", "CAE without nouns", (Bank.CAPTIONS,)),
    MethodSpec("cae-softmax", "CAE with softmax retrieval at OT's temperature instead of OT", BOTH,
               alignment="softmax"),
    MethodSpec("cae-concat", "CAE with equal weights instead of adaptive ones", BOTH, fusion="equal"),
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
    space: SpaceChoice = "tac"  # "hierarchy": MCA's hierarchy-aware filter on the nouns first (hierarchy.py)
    n_init: int | Literal["auto"] = "auto"  # k-means restarts: "auto" is 10, fewer at ImageNet size (clustering.py)
    kmeans_max_iter: int = 300
    top_matches: int = TOP_MATCHES
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("n_centres", "train_size"):
            value = getattr(self, name)
            if value is not None and not is_positive_integer(value):
                raise CaeError(f"{name} must be a positive integer or None, got {value!r}")
        n_restarts(1, 1, 1, self.n_init)  # validates n_init
        for name in ("texts_per_centre", "sinkhorn_max_iter", "kmeans_max_iter", "top_matches"):
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
        check_fusion_options(self.combine, self.gamma)
        resolve_device(self.device)  # an unknown device, or CUDA where there is none, fails here, not mid-run

