"""cae_core: training-free image clustering with hierarchical semantic alignment (CAE).

Arrays in, arrays out, progress through a callback; no user-interface code.
"""

from .alignment import Alignment, ot_alignment, softmax_alignment, transport_plan
from .bundle import FeaturesBundle, load_bundle, save_bundle
from .clustering import KMeansResult, spherical_kmeans
from .errors import CaeError
from .fusion import Fusion, fuse
from .metrics import cluster_accuracy, evaluate
from .pipeline import METHODS, CaeConfig, ClusteringResult, run_method, run_methods
from .semantic_space import SemanticSpace, TextSelection, build_semantic_space, default_n_centres

__all__ = [
    "Alignment", "CaeConfig", "CaeError", "ClusteringResult", "FeaturesBundle", "Fusion", "KMeansResult",
    "METHODS", "SemanticSpace", "TextSelection", "build_semantic_space", "cluster_accuracy",
    "default_n_centres", "evaluate", "fuse", "load_bundle", "ot_alignment", "run_method", "run_methods",
    "save_bundle", "softmax_alignment", "spherical_kmeans", "transport_plan",
]
