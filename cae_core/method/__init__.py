"""The method (paper steps 3-6): semantic space, OT alignment, fusion, k-means and metrics, and the runs
that chain them. ``semantic_space.py`` is step 3, ``alignment.py`` step 4, ``fusion.py`` step 5,
``clustering.py`` and ``metrics.py`` step 6; ``methods.py`` names the methods, ``run.py`` runs them."""

from .alignment import Alignment, SinkhornConvergenceWarning, ot_alignment, softmax_alignment, transport_plan
from .clustering import KMeansResult, spherical_kmeans
from .cluster_count import CLUSTER_COUNT_CRITERIA, ClusterCountEstimate, choose_n_clusters, estimate_n_clusters
from .fusion import Fusion, fuse
from .methods import DEFAULT_METHOD, FUSION_CHOICES, IMAGE_BASELINE, METHODS, SELECTION_CHOICES, SPACE_CHOICES, \
    CaeConfig, MethodSpec
from .metrics import cluster_accuracy, cluster_mapping, evaluate
from .run import AlignedBank, ClusteringResult, ClusterTexts, Representation, align_bank, bank_arrays, cluster_texts, \
    available_methods, fuse_for, represent, run_method, run_methods, semantic_space_for
from .semantic_space import Bank, SemanticSpace, TextSelection, build_semantic_space, default_n_centres, select_texts

__all__ = [
    "align_bank", "available_methods", "DEFAULT_METHOD", "IMAGE_BASELINE", "SELECTION_CHOICES", "AlignedBank", "Alignment", "Bank", "bank_arrays", "build_semantic_space", "CaeConfig",
    "choose_n_clusters", "cluster_accuracy", "CLUSTER_COUNT_CRITERIA", "cluster_mapping", "cluster_texts",
    "ClusterCountEstimate", "ClusteringResult", "ClusterTexts", "default_n_centres", "estimate_n_clusters",
    "evaluate", "fuse", "fuse_for", "Fusion", "FUSION_CHOICES", "KMeansResult", "METHODS", "MethodSpec",
    "ot_alignment", "represent", "Representation", "run_method", "run_methods", "select_texts",
    "semantic_space_for", "SemanticSpace", "SinkhornConvergenceWarning", "softmax_alignment", "SPACE_CHOICES",
    "spherical_kmeans", "TextSelection", "transport_plan",
]
