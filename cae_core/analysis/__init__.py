"""Reading runs: polysemy (``polysemy.py``), how alike images are per representation (``similarity.py``,
CAE's Figure 2), clusters and method comparisons (``comparison.py``), UMAP maps (``projection.py``),
parameter sweeps (``sweep.py``) and the files runs write (``export.py``)."""

from .comparison import aligned_assignments, changed_images, cluster_summary, confusion_table, match_clusters, \
    metrics_long
from .nearest_nouns import nearest_nouns
from .export import bundle_bytes, comparison_table, run_files, write_comparison, write_run, write_sweep
from .polysemy import TOP_NOUNS, SenseRow, captions_mentioning, encode_glosses, gloss_prompts, group_texts, \
    images_matching_noun, matched_senses, noun_rows, sense_caption_similarity, sense_cosines, \
    senses_distinguishable, word_senses
from .projection import project
from .similarity import REPRESENTATIONS, pair_similarities, representations, separation, shared_cluster_rate
from .sweep import SWEEPABLE, summarise, summary_markdown, sweep, sweep_figure

__all__ = [
    "REPRESENTATIONS", "SWEEPABLE", "SenseRow", "TOP_NOUNS", "aligned_assignments", "bundle_bytes", "captions_mentioning",
    "changed_images", "cluster_summary", "comparison_table", "confusion_table", "encode_glosses", "gloss_prompts",
    "group_texts", "images_matching_noun", "match_clusters", "nearest_nouns", "matched_senses", "metrics_long", "noun_rows",
    "pair_similarities", "project", "representations", "run_files", "sense_caption_similarity",
    "sense_cosines", "senses_distinguishable", "separation", "shared_cluster_rate", "summarise", "summary_markdown", "sweep",
    "sweep_figure", "word_senses", "write_comparison", "write_run", "write_sweep",
]
