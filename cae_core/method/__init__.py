"""The method (paper steps 3-6): semantic space, OT alignment, fusion, k-means and metrics, and the runs
that chain them. ``semantic_space.py`` is step 3, ``alignment.py`` step 4, ``fusion.py`` step 5,
``clustering.py`` and ``metrics.py`` step 6; ``methods.py`` names the methods, ``run.py`` runs them."""

from .alignment import Alignment, SinkhornConvergenceWarning, ot_alignment, softmax_alignment, transport_plan
from .clustering import KMeansResult, spherical_kmeans
from .fusion import Fusion, fuse
from .methods import FUSION_CHOICES, METHODS, SPACE_CHOICES, CaeConfig, MethodSpec
from .metrics import cluster_accuracy, cluster_mapping, evaluate
from .run import AlignedBank, ClusteringResult, ClusterTexts, align_bank, bank_arrays, cluster_texts, fuse_for, \
    run_method, run_methods, semantic_space_for
from .semantic_space import Bank, SemanticSpace, TextSelection, build_semantic_space, default_n_centres, select_texts

__all__ = [
    "Alignment", "AlignedBank", "Bank", "CaeConfig", "ClusterTexts", "ClusteringResult", "FUSION_CHOICES", "Fusion",
    "KMeansResult", "METHODS", "MethodSpec", "SPACE_CHOICES", "SemanticSpace", "SinkhornConvergenceWarning", "TextSelection",
    "align_bank", "bank_arrays", "build_semantic_space", "cluster_accuracy", "cluster_mapping", "cluster_texts",
    "default_n_centres", "evaluate", "fuse", "fuse_for", "ot_alignment", "run_method", "run_methods",
    "select_texts", "semantic_space_for", "softmax_alignment", "spherical_kmeans", "transport_plan",
]
