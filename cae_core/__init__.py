"""cae_core: training-free image clustering with hierarchical semantic alignment (CAE).

Arrays in, arrays out, progress through a callback; no user-interface code. The subpackages follow
the pipeline: ``inputs`` (steps 1-2: images, CLIP, text banks, the features bundle), ``method``
(steps 3-6: semantic space, OT, fusion, k-means, metrics), ``analysis`` (reading runs) and ``runs``
(the run store: every run recorded, reopened, compared, exported).
"""

from . import analysis, inputs, method, runs
from .config import data_dir
from .errors import CaeError
from .inputs import FeaturesBundle, load_bundle, planted_bundle, save_bundle
from .method import METHODS, AlignedBank, Alignment, Bank, CaeConfig, ClusteringResult, ClusterTexts, Fusion, \
    KMeansResult, MethodSpec, SemanticSpace, TextSelection, build_semantic_space, cluster_accuracy, \
    default_n_centres, evaluate, fuse, ot_alignment, run_method, run_methods, softmax_alignment, spherical_kmeans, \
    transport_plan

__all__ = [
    "AlignedBank", "Alignment", "Bank", "CaeConfig", "CaeError", "ClusterTexts", "ClusteringResult",
    "FeaturesBundle", "Fusion", "KMeansResult", "METHODS", "MethodSpec", "SemanticSpace", "TextSelection",
    "analysis", "build_semantic_space", "cluster_accuracy", "data_dir", "default_n_centres", "evaluate", "fuse",
    "inputs", "load_bundle", "method", "ot_alignment", "planted_bundle", "run_method", "run_methods",
    "runs", "save_bundle", "softmax_alignment", "spherical_kmeans", "transport_plan",
]
