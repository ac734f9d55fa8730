"""Reading runs: interpretation (polysemy, pair similarities, cluster tables, method comparisons), UMAP
projection, parameter sweeps, and the files runs write."""

from .export import bundle_bytes, comparison_table, run_files, write_comparison, write_run, write_sweep
from .interpret import (TOP_NOUNS, aligned_assignments, captions_mentioning, changed_images, checkpoint_changed,
                        cluster_summary, confusion_table, encode_glosses, gloss_prompts, group_texts,
                        images_matching_noun, match_clusters, matched_senses, metrics_long, noun_rows,
                        pair_similarities, representations, sense_caption_similarity, senses_distinguishable,
                        separation, shared_cluster_rate, text_model_of)
from .projection import project
from .sweep import SWEEPABLE, summarise, summary_markdown, sweep, sweep_figure

__all__ = [
    "SWEEPABLE", "TOP_NOUNS", "aligned_assignments", "bundle_bytes", "captions_mentioning", "changed_images",
    "checkpoint_changed", "cluster_summary", "comparison_table", "confusion_table", "encode_glosses",
    "gloss_prompts", "group_texts", "images_matching_noun", "match_clusters", "matched_senses", "metrics_long",
    "noun_rows", "pair_similarities", "project", "representations", "run_files", "sense_caption_similarity",
    "senses_distinguishable", "separation", "shared_cluster_rate", "summarise", "summary_markdown", "sweep",
    "text_model_of",
    "sweep_figure", "write_comparison", "write_run", "write_sweep",
]
