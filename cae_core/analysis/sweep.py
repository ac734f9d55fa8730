"""Methods x a grid of parameters x seeds on one bundle: a tidy table, its summary and a plot.

Besides ACC/NMI/ARI, each run records what explains its result: CAE's Figure-2 statistic (mean
cosine of same-class and different-class image pairs in each representation, raw and with each
representation centred), the fusion weights per modality, and Sinkhorn's iterations and convergence.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import CaeError
from ..inputs.bundle import FeaturesBundle
from ..method.methods import METHODS, CaeConfig
from ..method.run import ClusteringResult, run_methods
from ..method.semantic_space import Bank
from ..progress import Progress
from .similarity import separation

# the CaeConfig fields a sweep may vary (the rest are solver or device settings)
SWEEPABLE = ("epsilon", "gamma", "fusion", "combine", "space", "n_centres", "train_size", "texts_per_centre",
             "retrieval_tau")
SEPARATION_SAMPLE = 2000  # labelled images used for the Figure-2 statistic (pairs grow as N^2)
METRICS = ("acc", "nmi", "ari")


def check_grid(grid: dict[str, Sequence]) -> dict[str, list]:
    """The grid as lists, every value checked by building a ``CaeConfig``; ``CaeError`` otherwise."""
    unknown = sorted(set(grid) - set(SWEEPABLE))
    if unknown:
        raise CaeError(f"cannot sweep {', '.join(unknown)}; sweepable: {', '.join(SWEEPABLE)}")
    checked = {}
    for name, values in grid.items():
        values = list(values)
        if not values:
            raise CaeError(f"the grid gives no value for {name}")
        for value in values:
            CaeConfig(**{name: value})
        checked[name] = values
    return checked


def separation_record(result: ClusteringResult, bundle: FeaturesBundle, sample: np.ndarray) -> dict[str, float]:
    """``{rep}_within``, ``{rep}_between`` (raw cosines, Figure 2) and ``{rep}_centred_gap``
    (within - between after subtracting the representation's mean) for image, noun, caption, fused."""
    labels = bundle.labels[sample]
    record = {}
    for row in separation(result, bundle, sample, labels).itertuples():
        record[f"{row.representation}_within"], record[f"{row.representation}_between"] = row.within, row.between
    for row in separation(result, bundle, sample, labels, centred=True).itertuples():
        record[f"{row.representation}_centred_gap"] = row.gap
    return record


def run_record(result: ClusteringResult) -> dict:
    """Metrics, semantic-space size, fusion weights and Sinkhorn convergence of one run."""
    record: dict = {name: result.metrics.get(name, np.nan) for name in METRICS}
    space = result.semantic_space
    record["centres_used"] = space.n_centres if space else np.nan
    for bank in Bank:
        part = result.aligned.get(bank)
        record[f"{bank.value}_selected"] = len(part.selection) if part else np.nan
        record[f"{bank.modality}_iterations"] = part.alignment.n_iter if part else np.nan
        record[f"{bank.modality}_converged"] = part.alignment.converged if part else np.nan
    if result.fusion is not None:
        for column, modality in enumerate(result.fusion.modalities):
            weights = result.fusion.weights[:, column]
            record[f"weight_{modality}_mean"] = float(weights.mean())
            record[f"weight_{modality}_sd"] = float(weights.std())
            record[f"weight_{modality}_share_below_0.01"] = float((weights < 0.01).mean())
        record["gap_dominated_share"] = float(result.fusion.gap_dominated.mean())
    record["seconds"] = sum(result.stage_seconds.values())
    return record


def sweep(bundle: FeaturesBundle, n_clusters: int, grid: dict[str, Sequence] | None = None, *,
          methods: Sequence[str] = tuple(METHODS), seeds: Sequence[int] = (0, 1, 2),
          base: CaeConfig | None = None, progress: Progress | None = None,
          on_results: Callable[[dict[str, ClusteringResult]], None] | None = None) -> pd.DataFrame:
    """Every method at every point of ``grid`` (CaeConfig field -> values) for every seed.

    Returns one row per run: ``method``, the grid's fields, ``seed``, then ``run_record`` and (when
    the bundle has labels) ``separation_record`` columns. Methods that share a point and a seed share
    their semantic space and alignments. ``base`` holds the settings the grid does not vary;
    ``on_results`` receives each point and seed's runs (method -> result) as they are made.
    """
    grid = check_grid(grid or {})
    unknown = [method for method in methods if method not in METHODS]
    if unknown or not methods:
        raise CaeError(f"unknown method(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(METHODS)}")
    if not seeds:
        raise CaeError("give at least one seed")
    base = base or CaeConfig()
    sample = None
    if bundle.has_labels:
        labelled = np.flatnonzero(bundle.labels >= 0)
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(labelled, min(len(labelled), SEPARATION_SAMPLE), replace=False))
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    rows = []
    for index, (point, seed) in enumerate(itertools.product(points, seeds)):
        if progress:
            progress("sweep", index / (len(points) * len(seeds)), f"{point or 'defaults'}, seed {seed}")
        config = dataclasses.replace(base, **point)
        results = run_methods(bundle, list(methods), n_clusters, config=config, seed=seed)
        if on_results is not None:
            on_results(results)
        for method, result in results.items():
            row = {"method": method, **point, "seed": seed, **run_record(result)}
            if sample is not None:
                row.update(separation_record(result, bundle, sample))
            rows.append(row)
    if progress:
        progress("sweep", 1.0, "sweep done")
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every numeric column, per method and grid point."""
    keys = [column for column in table.columns if column == "method" or column in SWEEPABLE]
    numeric = [column for column in table.select_dtypes("number").columns if column not in keys + ["seed"]]
    grouped = table.groupby(keys, sort=False, dropna=False)[numeric]
    summary = grouped.mean().join(grouped.std(ddof=0), rsuffix="_sd").reset_index()
    summary.insert(len(keys), "seeds", grouped.size().to_numpy())
    return summary


def summary_markdown(table: pd.DataFrame) -> str:
    """The summary as a markdown table: metrics as mean ± sd, then the main diagnostics."""
    summary = summarise(table)
    keys = [column for column in summary.columns if column == "method" or column in SWEEPABLE]
    shown = summary[keys + ["seeds"]].copy()
    for name in METRICS:
        if name in summary and summary[name].notna().any():
            shown[name] = [f"{mean:.3f} ± {sd:.3f}" for mean, sd in zip(summary[name], summary[f"{name}_sd"])]
    for column in ("image_between", "noun_between", "caption_between", "fused_between",
                   "image_centred_gap", "fused_centred_gap", "weight_image_mean", "noun_iterations"):
        if column in summary:
            shown[column] = summary[column].round(3)
    return shown.to_markdown(index=False)


def sweep_figure(table: pd.DataFrame):
    """A plotly figure: mean ACC per method against the first swept parameter (one line per method
    and value of the others), error bars one sd over seeds; with no grid, one bar per method.
    Without labels there is no ACC, and the figure shows seconds per run instead."""
    import plotly.graph_objects as go

    summary = summarise(table)
    metric = "acc" if "acc" in summary and summary["acc"].notna().any() else "seconds"
    swept = [column for column in summary.columns if column in SWEEPABLE]
    figure = go.Figure()
    if not swept:
        figure.add_bar(x=summary["method"], y=summary[metric], error_y={"array": summary[f"{metric}_sd"]})
    else:
        x, rest = swept[0], swept[1:]
        for key, part in summary.groupby(["method", *rest], sort=False, dropna=False):
            name = " ".join(str(value) for value in (key if isinstance(key, tuple) else (key,)))
            figure.add_scatter(x=part[x].astype(str), y=part[metric], error_y={"array": part[f"{metric}_sd"]},
                               mode="lines+markers", name=name)
        figure.update_xaxes(title=x)
    figure.update_yaxes(title=f"{metric} (mean ± sd over seeds)")
    figure.update_layout(title="CAE Explorer sweep", template="plotly_white")
    return figure
