"""The method (paper steps 3-6): semantic space, OT alignment, fusion, k-means and metrics, and the runs
that chain them. ``semantic_space.py`` is step 3, ``alignment.py`` step 4, ``fusion.py`` step 5,
``clustering.py`` and ``metrics.py`` step 6; ``methods.py`` names the methods, ``run.py`` runs them."""

from .alignment import EPSILON, Alignment, SinkhornConvergenceWarning, ot_alignment, softmax_alignment, transport_plan
from .clustering import KMeansResult, spherical_kmeans
from .cluster_count import CLUSTER_COUNT_CRITERIA, DEFAULT_RANGE, GRAPH_NEIGHBOURS, MAX_ROWS, ClusterCountEstimate, \
    choose_n_clusters, estimate_n_clusters
from .fusion import GAMMA, Fusion, fuse
from .hierarchy import CONCEPT_DEPTH, GENERAL_DEPTH, MIN_SUPPORT, NEAREST_NOUNS
from .methods import DEFAULT_CLUSTERS, DEFAULT_METHOD, FUSION_CHOICES, IMAGE_BASELINE, METHODS, SELECTION_CHOICES, \
    SPACE_CHOICES, CaeConfig, MethodSpec
from .metrics import cluster_accuracy, cluster_mapping, evaluate
from .run import AlignedBank, ClusteringResult, ClusterTexts, Representation, align_bank, available_methods, \
    bank_arrays, cluster_texts, fuse_for, represent, run_method, run_methods, semantic_space_for
from .semantic_space import CENTRES_PER_IMAGE, SMALL_SET_CENTRES_PER_CLUSTER, TEXTS_PER_CENTRE, Bank, SemanticSpace, \
    TextSelection, build_semantic_space, default_n_centres, select_texts

__all__ = [
    "CENTRES_PER_IMAGE", "CONCEPT_DEPTH", "DEFAULT_CLUSTERS", "DEFAULT_RANGE", "EPSILON", "GAMMA", "GENERAL_DEPTH",
    "GRAPH_NEIGHBOURS", "MAX_ROWS", "MIN_SUPPORT", "NEAREST_NOUNS", "SMALL_SET_CENTRES_PER_CLUSTER", "TEXTS_PER_CENTRE",
    "align_bank", "available_methods", "DEFAULT_METHOD", "IMAGE_BASELINE", "SELECTION_CHOICES", "AlignedBank",
    "Alignment", "Bank", "bank_arrays", "build_semantic_space", "CaeConfig",
    "choose_n_clusters", "cluster_accuracy", "CLUSTER_COUNT_CRITERIA", "cluster_mapping", "cluster_texts",
    "ClusterCountEstimate", "ClusteringResult", "ClusterTexts", "default_n_centres", "estimate_n_clusters",
    "evaluate", "fuse", "fuse_for", "Fusion", "FUSION_CHOICES", "KMeansResult", "METHODS", "MethodSpec",
    "ot_alignment", "represent", "Representation", "run_method", "run_methods", "select_texts",
    "semantic_space_for", "SemanticSpace", "SinkhornConvergenceWarning", "softmax_alignment", "SPACE_CHOICES",
    "spherical_kmeans", "TextSelection", "transport_plan",
]
