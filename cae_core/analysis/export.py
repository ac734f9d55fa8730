"""The files a run writes (CLI and app alike): assignments.csv, metrics.json, clusters.json,
the method comparison table, sweeps and the choice of K. Every file is written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from ..files import atomic_write_text
from ..inputs.bundle import FeaturesBundle, save_bundle
from ..method.cluster_count import ClusterCountEstimate
from ..method.run import ClusteringResult
from .sweep import SweepComparison, compare_sweep, paired_figure, summarise, sweep_figure, sweep_markdown


def assignments_table(result: ClusteringResult, bundle: FeaturesBundle) -> pd.DataFrame:
    """``index, image_id, cluster, label`` (label empty when unknown), one row per image."""
    labels = [""] * bundle.n_images if bundle.labels is None else \
        ["" if label < 0 else int(label) for label in bundle.labels]
    return pd.DataFrame({"index": range(bundle.n_images), "image_id": bundle.image_ids,
                         "cluster": result.assignments, "label": labels})


def metrics_record(result: ClusteringResult) -> dict:
    """``acc, nmi, ari`` (when labels exist), method, sizes and seconds per stage."""
    return {**result.metrics, "method": result.method, "n_images": int(len(result.assignments)),
            "n_clusters": result.n_clusters, "seed": result.seed,
            "seconds": {stage: round(value, 4) for stage, value in result.stage_seconds.items()}}


def assignments_csv(result: ClusteringResult, bundle: FeaturesBundle) -> str:
    return assignments_table(result, bundle).to_csv(index=False)


def metrics_json(result: ClusteringResult) -> str:
    return json.dumps(metrics_record(result), indent=2)


def clusters_json(result: ClusteringResult) -> str:
    return json.dumps([entry.to_dict() for entry in result.cluster_texts], indent=2, ensure_ascii=False)


def run_files(result: ClusteringResult, bundle: FeaturesBundle) -> dict[str, str]:
    """A run's files by name: ``assignments.csv``, ``metrics.json``, ``clusters.json``."""
    return {"assignments.csv": assignments_csv(result, bundle), "metrics.json": metrics_json(result),
            "clusters.json": clusters_json(result)}


def write_run(result: ClusteringResult, bundle: FeaturesBundle, out_dir: str | os.PathLike) -> list[Path]:
    """Write the run's files (``run_files``) into ``out_dir``."""
    return [atomic_write_text(Path(out_dir) / name, text) for name, text in run_files(result, bundle).items()]


def bundle_bytes(bundle: FeaturesBundle) -> bytes:
    """The ``.npz`` that ``save_bundle`` writes (and ``--features`` reads), as bytes for a download."""
    with tempfile.TemporaryDirectory() as folder:
        return save_bundle(bundle, Path(folder) / "features.npz").read_bytes()


def comparison_table(results: dict[str, ClusteringResult]) -> pd.DataFrame:
    """One row per method: acc, nmi, ari (empty without labels) and total seconds."""
    rows = [{"method": name, **{key: result.metrics.get(key) for key in ("acc", "nmi", "ari")},
             "seconds": round(sum(result.stage_seconds.values()), 3)} for name, result in results.items()]
    return pd.DataFrame(rows)


def write_comparison(results: dict[str, ClusteringResult], out_dir: str | os.PathLike) -> list[Path]:
    """``comparison.csv`` and ``comparison.md`` (metrics as percentages in the Markdown table)."""
    table = comparison_table(results)
    markdown = table.copy()
    for key in ("acc", "nmi", "ari"):
        markdown[key] = [("" if value is None or pd.isna(value) else f"{100 * value:.1f}") for value in table[key]]
    out_dir = Path(out_dir)
    return [atomic_write_text(out_dir / "comparison.csv", table.to_csv(index=False)),
            atomic_write_text(out_dir / "comparison.md", markdown.to_markdown(index=False) + "\n")]


def write_sweep(table: pd.DataFrame, out_dir: str | os.PathLike,
                comparison: SweepComparison | None = None) -> list[Path]:
    """A ``sweep_bundles`` table's files: ``sweep.csv`` (one row per run), ``sweep_summary.csv`` (mean and sd
    over seeds per bundle, method and grid point), ``paired.csv`` and ``ranks.csv`` (``comparison``, by
    default ``compare_sweep(table)``), ``sweep.md`` (every table) and ``sweep.html`` (the plots)."""
    comparison = compare_sweep(table) if comparison is None else comparison
    figures = [sweep_figure(table, comparison.metric)] + ([paired_figure(comparison)] if len(comparison.paired) else [])
    # one page, plotly.js once (with the first figure), so it opens offline
    plots = "\n".join(figure.to_html(full_html=False, include_plotlyjs=index == 0)
                      for index, figure in enumerate(figures))
    html = f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>CAE Explorer sweep</title></head>' \
           f"<body>\n{plots}\n</body></html>\n"
    out_dir = Path(out_dir)
    return [atomic_write_text(out_dir / "sweep.csv", table.to_csv(index=False)),
            atomic_write_text(out_dir / "sweep_summary.csv", summarise(table).to_csv(index=False)),
            atomic_write_text(out_dir / "paired.csv", comparison.paired.to_csv(index=False)),
            atomic_write_text(out_dir / "ranks.csv", comparison.ranks.to_csv(index=False)),
            atomic_write_text(out_dir / "sweep.md", sweep_markdown(table, comparison) + "\n"),
            atomic_write_text(out_dir / "sweep.html", html)]


def write_cluster_count(estimate: ClusterCountEstimate, out_dir: str | os.PathLike,
                        true_k: int | None = None) -> list[Path]:
    """``cluster_count.csv`` (the criterion per K) and ``cluster_count.html`` (its plot)."""
    from .cluster_quality import cluster_count_figure, cluster_count_table

    out_dir = Path(out_dir)
    figure = cluster_count_figure(estimate, true_k)
    return [atomic_write_text(out_dir / "cluster_count.csv", cluster_count_table(estimate).to_csv(index=False)),
            atomic_write_text(out_dir / "cluster_count.html", figure.to_html(include_plotlyjs=True))]
