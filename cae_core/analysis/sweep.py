"""Methods x a grid of parameters x seeds on one bundle or many: a tidy table, its summary, the
comparison of methods across bundles (``comparison_stats.py``) and plots.

Besides ACC/NMI/ARI, each run records what explains its result: CAE's Figure-2 statistic (mean
cosine of same-class and different-class image pairs in each representation, raw and with each
representation centred), the fusion weights per modality, and Sinkhorn's iterations and convergence.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import CaeError
from ..inputs.bundle import FeaturesBundle, load_bundle
from ..method.methods import METHODS, CaeConfig
from ..method.run import ClusteringResult, available_methods, run_methods
from ..method.semantic_space import Bank
from ..progress import Progress
from .cluster_quality import true_cluster_count
from .comparison_stats import ALL, TIE, average_ranks, bundle_means, friedman_p, paired_differences, \
    wins_ties_losses
from .concentration import alignment_rows, bundle_lineage, measure_rows
from .similarity import separation

# the CaeConfig fields a sweep may vary (the rest are solver or device settings)
SWEEPABLE = ("epsilon", "gamma", "fusion", "centre", "combine", "neighbours", "space", "selection", "n_centres",
             "train_size", "texts_per_centre", "retrieval_tau")
SEPARATION_SAMPLE = 2000  # labelled images used for the Figure-2 statistic (pairs grow as N^2)
METRICS = ("acc", "nmi", "ari")
KEYS = ("bundle", "n_clusters", "method")  # with the swept fields, what tells a run's summary row apart
LABELS = "labels"  # n_clusters = LABELS: each bundle's number of labelled classes
REFERENCE = "clip-kmeans"  # the default reference of the paired differences, where it is swept


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


def check_runs(methods: Sequence[str], seeds: Sequence[int]) -> None:
    """``CaeError`` unless ``methods`` are known and there is a seed."""
    unknown = [method for method in methods if method not in METHODS]
    if unknown or not methods:
        raise CaeError(f"unknown method(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(METHODS)}")
    if not seeds:
        raise CaeError("give at least one seed")


def reference_method(methods: Sequence[str], reference: str | None = None) -> str:
    """The method the others are compared with: ``reference`` if given (it must be swept), else
    ``REFERENCE`` where swept, else the first method."""
    if reference is None:
        return REFERENCE if REFERENCE in methods else methods[0]
    if reference not in methods:
        raise CaeError(f"the reference {reference!r} is not among the methods swept ({', '.join(methods)}); "
                       "add it to the methods")
    return reference


def load_bundles(paths: Sequence[str | os.PathLike]) -> dict[str, FeaturesBundle]:
    """Every bundle loaded (so validated) before anything runs, named by its file's stem; an error names
    the file."""
    names = [Path(path).stem for path in paths]
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice:
        same = ", ".join(str(path) for path, name in zip(paths, names) if name == twice)
        raise CaeError(f"two bundles are named {twice} ({same}); a sweep names bundles by their file's stem, "
                       "so rename one")
    bundles = {}
    for name, path in zip(names, paths):
        try:
            bundles[name] = load_bundle(path)
        except CaeError as error:
            message = str(error)
            raise CaeError(message if str(path) in message else f"{path}: {message}") from None
    return bundles


def cluster_counts(bundles: Mapping[str, FeaturesBundle], n_clusters: int | str) -> dict[str, int]:
    """K per bundle: ``n_clusters`` for all, or with ``LABELS`` each bundle's number of labelled classes."""
    if n_clusters != LABELS:
        return {name: int(n_clusters) for name in bundles}
    counts = {name: true_cluster_count(bundle) for name, bundle in bundles.items()}
    unlabelled = [name for name, count in counts.items() if count is None]
    if unlabelled:
        raise CaeError(f"bundle {unlabelled[0]} has no labels, so --clusters {LABELS} cannot count its classes; "
                       "give K as a number")
    return counts


def common_methods(bundles: Mapping[str, FeaturesBundle]) -> list[str]:
    """The methods every one of ``bundles`` allows (SAC's needs per-image captions)."""
    return [name for name in METHODS if all(name in available_methods(bundle) for bundle in bundles.values())]


def sweep_bundles(bundles: Mapping[str, FeaturesBundle], n_clusters: int | str,
                  grid: dict[str, Sequence] | None = None, *, methods: Sequence[str] | None = None,
                  seeds: Sequence[int] = (0, 1, 2), base: CaeConfig | None = None,
                  progress: Progress | None = None,
                  on_results: Callable[[str, dict[str, ClusteringResult]], None] | None = None) -> pd.DataFrame:
    """``sweep`` on every bundle (name -> bundle), K from ``cluster_counts``: its rows with ``bundle`` and
    ``n_clusters`` first. ``methods``: by default every one that all the bundles allow. Everything is
    checked before the first run; progress is one stage per bundle and seed."""
    counts = cluster_counts(bundles, n_clusters)
    grid = check_grid(grid or {})
    methods = common_methods(bundles) if methods is None else methods
    check_runs(methods, seeds)
    tables = []
    steps = list(itertools.product(bundles.items(), seeds))
    for index, ((name, bundle), seed) in enumerate(steps):
        if progress:
            progress(f"sweep {name}, seed {seed}", 0.0,
                     f"{index + 1}/{len(steps)}: K = {counts[name]}, {len(methods)} method(s)")
        table = sweep(bundle, counts[name], grid, methods=methods, seeds=[seed], base=base,
                      on_results=None if on_results is None else functools.partial(on_results, name))
        table.insert(0, "bundle", name)
        table.insert(1, "n_clusters", counts[name])
        tables.append(table)
    if progress:
        progress("sweep", 1.0, "sweep done")
    return pd.concat(tables, ignore_index=True)


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
        for column, modality in enumerate(result.fusion.modalities[1:], start=1):
            record[f"agreement_{modality}_mean"] = float(result.fusion.agreement[:, column].mean())
    record["seconds"] = sum(result.stage_seconds.values())
    return record


def correspondence_record(result: ClusteringResult, bundle: FeaturesBundle) -> dict[str, float]:
    """How concentrated each bank's correspondences are (``{modality}_top1_share_mean``,
    ``_top10_share_mean``, ``_effective_texts_mean`` and medians) and, for the nouns where the bundle's
    classes and synsets allow it, Theorem 1's ``noun_off_lineage_mass`` (concentration.py)."""
    record = {}
    for bank, part in result.aligned.items():
        lineage = bundle_lineage(bundle, part.selection.bank_index) if bank == Bank.NOUNS else None
        figures = measure_rows(lambda: alignment_rows(bundle.image_embeddings, part.selection.embeddings,
                                                      part.alignment), bundle.labels, lineage)
        record.update({f"{bank.modality}_{name}": value for name, value in figures.items()})
    return record


def sweep(bundle: FeaturesBundle, n_clusters: int, grid: dict[str, Sequence] | None = None, *,
          methods: Sequence[str] | None = None, seeds: Sequence[int] = (0, 1, 2),
          base: CaeConfig | None = None, progress: Progress | None = None,
          on_results: Callable[[dict[str, ClusteringResult]], None] | None = None) -> pd.DataFrame:
    """Every method at every point of ``grid`` (CaeConfig field -> values) for every seed.

    Returns one row per run: ``method``, the grid's fields, ``seed``, then ``run_record`` and (when
    the bundle has labels) ``separation_record`` columns. Methods that share a point and a seed share
    their semantic space and alignments. ``base`` holds the settings the grid does not vary;
    ``on_results`` receives each point and seed's runs (method -> result) as they are made.
    """
    grid = check_grid(grid or {})
    methods = available_methods(bundle) if methods is None else methods
    check_runs(methods, seeds)
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
            row = {"method": method, **point, "seed": seed, **run_record(result),
                   **correspondence_record(result, bundle)}
            if sample is not None:
                row.update(separation_record(result, bundle, sample))
            rows.append(row)
    if progress:
        progress("sweep", 1.0, "sweep done")
    return pd.DataFrame(rows)


def summary_keys(table: pd.DataFrame) -> list[str]:
    """The columns of ``table`` that tell a summary row apart: ``KEYS`` and the swept fields."""
    return [column for column in table.columns if column in KEYS or column in SWEEPABLE]


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every numeric column, per bundle, method and grid point."""
    keys = summary_keys(table)
    numeric = [column for column in table.select_dtypes("number").columns if column not in keys + ["seed"]]
    grouped = table.groupby(keys, sort=False, dropna=False)[numeric]
    summary = grouped.mean().join(grouped.std(ddof=0), rsuffix="_sd").reset_index()
    summary.insert(len(keys), "seeds", grouped.size().to_numpy())
    return summary


def summary_markdown(table: pd.DataFrame) -> str:
    """The summary as a markdown table: metrics as mean ± sd, then the main diagnostics."""
    summary = summarise(table)
    keys = summary_keys(summary)
    shown = summary[keys + ["seeds"]].copy()
    for name in METRICS:
        if name in summary and summary[name].notna().any():
            shown[name] = [f"{mean:.3f} ± {sd:.3f}" for mean, sd in zip(summary[name], summary[f"{name}_sd"])]
    for column in ("image_between", "noun_between", "caption_between", "fused_between",
                   "image_centred_gap", "fused_centred_gap", "weight_image_mean", "noun_iterations"):
        if column in summary:
            shown[column] = summary[column].round(3)
    return shown.to_markdown(index=False)


def sweep_figure(table: pd.DataFrame, metric: str = "acc"):
    """A plotly figure: mean ``metric`` per method against the first swept parameter (one line per
    bundle where there are several, method and value of the others), error bars one sd over seeds; with
    no grid, one bar per method and bundle. Without labels there is no metric, and the figure shows
    seconds per run instead."""
    import plotly.graph_objects as go

    summary = summarise(table)
    metric = metric if metric in summary and summary[metric].notna().any() else "seconds"
    swept = [column for column in summary.columns if column in SWEEPABLE]
    several = "bundle" in summary and summary["bundle"].nunique() > 1
    figure = go.Figure()
    if not swept:
        for method, part in summary.groupby("method", sort=False):
            figure.add_bar(x=part["bundle"], y=part[metric], error_y={"array": part[f"{metric}_sd"]}, name=method)
        figure.update_layout(barmode="group")
    else:
        x, rest = swept[0], swept[1:]
        for key, part in summary.groupby([*(["bundle"] if several else []), "method", *rest], sort=False, dropna=False):
            name = " ".join(str(value) for value in (key if isinstance(key, tuple) else (key,)))
            figure.add_scatter(x=part[x].astype(str), y=part[metric], error_y={"array": part[f"{metric}_sd"]},
                               mode="lines+markers", name=name)
        figure.update_xaxes(title=x)
    figure.update_yaxes(title=f"{metric} (mean ± sd over seeds)")
    figure.update_layout(title="CAE Explorer sweep", template="plotly_white")
    return figure


@dataclasses.dataclass
class SweepComparison:
    """Methods compared across bundles on ``metric`` (see ``comparison_stats``): ``paired`` as
    ``paired_differences`` returns it, ``ranks`` one row per method (and grid point): ``method, *grid,
    bundles, average_rank, mean_<metric>`` (over the ranked bundles), ``wins, ties, losses`` (empty for
    the reference), ``rank_<bundle>…``; ``friedman_p`` NaN where the test does not apply."""

    metric: str
    reference: str
    grid: list[str]
    paired: pd.DataFrame
    ranks: pd.DataFrame
    friedman_p: float


def compare_sweep(table: pd.DataFrame, metric: str = "acc", reference: str | None = None) -> SweepComparison:
    """The comparison of a ``sweep_bundles`` table's methods against ``reference`` (``reference_method``'s
    default), each grid point's methods against the reference at the same point."""
    if metric not in METRICS:
        raise CaeError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    reference = reference_method(list(table["method"].unique()), reference)
    grid = [column for column in table.columns if column in SWEEPABLE]
    paired = paired_differences(table, metric, reference, grid)
    ranks = average_ranks(table, metric, grid)
    means = bundle_means(table, metric, grid).mean(axis=1).rename(f"mean_{metric}").reset_index()
    ranks = ranks.merge(means, on=["method", *grid], how="left").merge(
        wins_ties_losses(paired, grid), on=["method", *grid], how="left")
    ranks[["wins", "ties", "losses"]] = ranks[["wins", "ties", "losses"]].astype("Int64")  # empty for the reference
    first = ["method", *grid, "bundles", "average_rank", f"mean_{metric}", "wins", "ties", "losses"]
    ranks = ranks[first + [column for column in ranks.columns if column not in first]]
    return SweepComparison(metric, reference, grid, paired, ranks, friedman_p(table, metric, grid))


def _entry(frame: pd.DataFrame, grid: Sequence[str]) -> pd.Series:
    """Each row's method and grid point as one label: ``cae`` or ``cae epsilon=0.05 fusion=paper``."""
    label = frame["method"].astype(str)
    for column in grid:
        label = label + f" {column}=" + frame[column].astype(str)
    return label


def bundle_markdown(table: pd.DataFrame, metric: str = "acc") -> str:
    """``metric`` as mean ± sd over seeds, one row per method (and grid point), one column per bundle
    (headed ``name (K)``), the best mean of each bundle in bold."""
    summary = summarise(table).dropna(subset=[metric])
    grid = [column for column in summary.columns if column in SWEEPABLE]
    summary["entry"] = _entry(summary, grid)
    best = summary.groupby("bundle")[metric].transform("max")
    cells = [f"{mean:.3f} ± {sd:.3f}" for mean, sd in zip(summary[metric], summary[f"{metric}_sd"])]
    summary["cell"] = [f"**{cell}**" if mean == top else cell for cell, mean, top in zip(cells, summary[metric], best)]
    summary["column"] = summary["bundle"] + " (" + summary["n_clusters"].astype(str) + ")"
    wide = summary.pivot(index="entry", columns="column", values="cell")
    wide = wide.loc[summary["entry"].unique(), summary["column"].unique()]
    return wide.rename_axis(index="method", columns=None).reset_index().to_markdown(index=False)


def comparison_markdown(comparison: SweepComparison) -> str:
    """Paired differences (mean [95% CI], per bundle and over all) and the ranks with wins / ties / losses."""
    metric, paired, ranks = comparison.metric, comparison.paired.copy(), comparison.ranks.copy()
    if paired.empty:
        return f"No paired differences: no method besides {comparison.reference} has {metric}."
    paired["entry"] = _entry(paired, comparison.grid)
    paired["cell"] = [f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"
                      for mean, low, high in zip(paired["mean_diff"], paired["ci_low"], paired["ci_high"])]
    wide = paired.pivot(index="entry", columns="bundle", values="cell")
    wide = wide.loc[paired["entry"].unique(), paired["bundle"].unique()]
    ranks["entry"] = _entry(ranks, comparison.grid)
    counts = ["" if pd.isna(wins) else f"{wins:.0f} / {ties:.0f} / {losses:.0f}"
              for wins, ties, losses in zip(ranks["wins"], ranks["ties"], ranks["losses"])]
    shown = pd.DataFrame({"method": ranks["entry"], "average rank": ranks["average_rank"].round(2),
                          f"mean {metric}": ranks[f"mean_{metric}"].round(3),
                          f"wins / ties / losses vs {comparison.reference}": counts})
    friedman = "not computed (it needs at least 3 methods, 2 bundles and some difference between methods)" \
        if pd.isna(comparison.friedman_p) \
        else f"p = {comparison.friedman_p:.3g} (chi-square approximation, rough below about 10 bundles)"
    return "\n".join([
        f"### {metric} minus {comparison.reference}'s, paired by bundle and seed: mean [95% bootstrap CI]", "",
        f"Per bundle, the mean over its seeds, its interval from resampling the seeds; {ALL}, the mean over "
        f"every (bundle, seed) pair, its interval from resampling the bundles and then each drawn bundle's "
        f"seeds (percentile, 2,000 resamples, seeded).", "",
        wide.rename_axis(index="method", columns=None).reset_index().to_markdown(index=False), "",
        f"### Average rank over {int(ranks['bundles'].max())} bundle(s) (1 = best mean {metric}, ties share "
        f"their average) and wins / ties / losses (a tie: |mean difference| < {TIE})", "",
        shown.to_markdown(index=False), "", f"Friedman test across bundles: {friedman}."])


def sweep_markdown(table: pd.DataFrame, comparison: SweepComparison) -> str:
    """``sweep.md``: the per-bundle table, the comparison and every run's summary with its diagnostics."""
    metric = comparison.metric
    parts = [f"# Sweep: {table['bundle'].nunique()} bundle(s), {table['method'].nunique()} method(s), "
             f"seeds {', '.join(str(seed) for seed in table['seed'].unique())}", ""]
    if table[metric].notna().any():
        parts += [f"## {metric} per bundle (mean ± sd over seeds; K in brackets)", "",
                  bundle_markdown(table, metric), "", f"## Against {comparison.reference}", "",
                  comparison_markdown(comparison), ""]
    parts += ["## Every method, bundle and grid point: mean ± sd over seeds, with diagnostics", "",
              summary_markdown(table), ""]
    return "\n".join(parts)


def paired_figure(comparison: SweepComparison):
    """A plotly forest plot: each method's mean difference from the reference per bundle and over all
    (diamonds), with its 95% bootstrap interval; the band is the tie threshold."""
    import plotly.graph_objects as go

    paired = comparison.paired.copy()
    paired["entry"] = _entry(paired, comparison.grid)
    figure = go.Figure()
    for entry, part in paired.groupby("entry", sort=False):
        figure.add_scatter(x=part["mean_diff"], y=entry + ": " + part["bundle"], mode="markers", name=entry,
                           marker={"symbol": ["diamond" if bundle == ALL else "circle" for bundle in part["bundle"]],
                                   "size": [12 if bundle == ALL else 8 for bundle in part["bundle"]]},
                           error_x={"type": "data", "symmetric": False, "array": part["ci_high"] - part["mean_diff"],
                                    "arrayminus": part["mean_diff"] - part["ci_low"]})
    figure.add_vrect(x0=-TIE, x1=TIE, fillcolor="grey", opacity=0.2, line_width=0)
    figure.add_vline(x=0, line_color="black", line_width=1)
    figure.update_yaxes(autorange="reversed")
    figure.update_xaxes(title=f"{comparison.metric} − {comparison.reference} (paired by seed; 95% bootstrap CI)")
    figure.update_layout(title=f"Paired differences against {comparison.reference}", template="plotly_white",
                         height=200 + 22 * len(paired))
    return figure
