"""Reading runs: polysemy (``polysemy.py``), how alike images are per representation (``similarity.py``,
CAE's Figure 2), clusters and method comparisons (``comparison.py``), label-free cluster quality and the
choice of K (``cluster_quality.py``), how concentrated the correspondences are and Theorem 1's WordNet check
(``concentration.py``), why an image is where it is (``explain.py``), text search
(``text_search.py``), UMAP maps (``projection.py``), parameter sweeps over one bundle or many (``sweep.py``),
methods compared across bundles (``comparison_stats.py``) and the files runs write (``export.py``)."""

from .comparison import aligned_assignments, changed_images, cluster_summary, confusion_table, match_clusters, \
    metrics_long
from .concentration import ClassLineage, RowConcentration, bundle_lineage, class_lineage, concentration, \
    measure_rows, off_lineage_mass, ot_rows, plan_rows, retrieval_rows, row_concentration, theorem1_check
from .cluster_quality import cluster_count_figure, cluster_count_table, cluster_quality, true_cluster_count
from .explain import ImageExplanation, explain_image
from .nearest_nouns import nearest_nouns
from .export import bundle_bytes, comparison_table, run_files, write_cluster_count, write_comparison, write_run, \
    write_sweep
from .polysemy import TOP_NOUNS, SenseRow, captions_mentioning, encode_glosses, gloss_prompts, group_texts, \
    heaviest_images, images_matching_noun, matched_senses, noun_rows, sense_caption_similarity, sense_cosines, \
    senses_distinguishable, word_senses
from .projection import project, remove_modality_gap, thin_by_density
from .similarity import REPRESENTATIONS, pair_similarities, representations, separation, shared_cluster_rate
from .sweep import SWEEPABLE, SweepComparison, compare_sweep, summarise, summary_markdown, sweep, sweep_bundles, \
    sweep_figure
from .text_search import SearchResult, TextQuery, query_from_banks, query_from_model, search_images

__all__ = [
    "aligned_assignments", "bundle_bytes", "captions_mentioning", "changed_images", "bundle_lineage", "ClassLineage", "class_lineage",
    "cluster_count_figure", "concentration", "measure_rows", "off_lineage_mass", "ot_rows", "plan_rows", "retrieval_rows",
    "row_concentration", "RowConcentration", "theorem1_check",
    "cluster_count_table", "cluster_quality", "cluster_summary", "compare_sweep", "comparison_table", "confusion_table",
    "encode_glosses", "explain_image", "gloss_prompts", "group_texts", "heaviest_images", "ImageExplanation",
    "images_matching_noun", "match_clusters", "matched_senses", "metrics_long", "nearest_nouns", "noun_rows",
    "pair_similarities", "project", "query_from_banks", "query_from_model", "remove_modality_gap",
    "representations", "REPRESENTATIONS", "run_files", "search_images", "SearchResult", "sense_caption_similarity",
    "sense_cosines", "SenseRow", "senses_distinguishable", "separation", "shared_cluster_rate", "summarise",
    "summary_markdown", "sweep", "sweep_bundles", "sweep_figure", "SweepComparison", "SWEEPABLE", "TextQuery",
    "thin_by_density", "TOP_NOUNS",
    "true_cluster_count", "word_senses", "write_cluster_count", "write_comparison", "write_run", "write_sweep",
]
