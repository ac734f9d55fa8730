"""Comparing methods across bundles from a sweep's per-run table (columns ``bundle``, ``method``, ``seed``,
the grid's fields and a metric), as Demšar (2006) compares classifiers across datasets.

- **Paired differences** against a reference method: for each bundle, seed and grid point, the method's
  metric minus the reference's on the same bundle, seed and point (same semantic space and alignments).
  Per bundle, the mean over its seeds; overall, the mean over every (bundle, seed) pair.
- **Bootstrap 95% confidence intervals** (percentile, 2,000 resamples, ``numpy.random.default_rng(0)``):
  overall, a two-stage resample (bundles with replacement, then within each drawn bundle its seeds with
  replacement), so the interval carries both the spread between sets and the spread between seeds; per
  bundle, its seeds only. With one seed a bundle's interval is a point: the seeds say nothing there.
- **Wins / ties / losses** over bundles: a bundle's mean difference within ``TIE`` (0.005) of zero is a
  tie, above it a win, below a loss.
- **Average ranks**: per bundle, rank 1 to the best mean metric, tied means sharing the average of their
  ranks; then each method's mean rank over the bundles where every method has the metric. Friedman's
  test on those bundles (``scipy.stats.friedmanchisquare``, chi-square approximation: rough below about
  10 bundles) where there are at least 3 methods and 2 bundles.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

TIE = 0.005  # |mean difference| below this on a bundle is a tie (half a point of ACC)
RESAMPLES = 2000
LEVEL = 0.95
ALL = "(all)"  # the ``bundle`` of the overall rows


def bootstrap_mean_ci(groups: Sequence[np.ndarray], *, resamples: int = RESAMPLES, level: float = LEVEL,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean over all values of ``groups`` (one array per bundle, its paired
    differences by seed): each resample draws len(groups) groups with replacement, then within each drawn
    group as many values as it has, with replacement, and takes the mean of everything drawn."""
    sizes = np.array([len(group) for group in groups])
    padded = np.zeros((len(groups), sizes.max()))
    for row, group in enumerate(groups):
        padded[row, :len(group)] = group
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(groups), (resamples, len(groups)))
    drawn_sizes = sizes[drawn][..., None]  # (resamples, groups, 1)
    positions = (rng.random((resamples, len(groups), sizes.max())) * drawn_sizes).astype(np.int64)
    used = np.arange(sizes.max()) < drawn_sizes  # a drawn group with fewer values uses fewer positions
    values = padded[drawn[..., None], positions]
    means = (values * used).sum(axis=(1, 2)) / used.sum(axis=(1, 2))
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def outcome(mean_difference: float, tie: float = TIE) -> str:
    """``win``, ``tie`` or ``loss`` of one bundle's mean difference against the reference."""
    if abs(mean_difference) < tie:
        return "tie"
    return "win" if mean_difference > 0 else "loss"


def paired_differences(table: pd.DataFrame, metric: str, reference: str, by: Sequence[str] = (), *,
                       tie: float = TIE, resamples: int = RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """One row per method other than ``reference`` (and value of the ``by`` grid fields) and bundle, then
    one with bundle ``ALL``: ``method, *by, bundle, reference, metric, pairs, mean_diff, ci_low, ci_high,
    outcome`` (win/tie/loss on bundle rows, empty on the overall row). Runs without the metric are left out."""
    by = list(by)
    data = table.dropna(subset=[metric])
    base = data.loc[data["method"] == reference, ["bundle", "seed", *by, metric]].rename(columns={metric: "_ref"})
    pairs = data[data["method"] != reference].merge(base, on=["bundle", "seed", *by])
    pairs["_diff"] = pairs[metric] - pairs["_ref"]
    rows = []
    for key, part in pairs.groupby(["method", *by], sort=False, dropna=False):
        entry = dict(zip(["method", *by], key))
        per_bundle = {bundle: bundle_part["_diff"].to_numpy()
                      for bundle, bundle_part in part.groupby("bundle", sort=False)}
        for bundle, differences in [*per_bundle.items(), (ALL, np.concatenate(list(per_bundle.values())))]:
            groups = list(per_bundle.values()) if bundle == ALL else [differences]
            low, high = bootstrap_mean_ci(groups, resamples=resamples, seed=seed)
            rows.append({**entry, "bundle": bundle, "reference": reference, "metric": metric,
                         "pairs": len(differences), "mean_diff": differences.mean(), "ci_low": low, "ci_high": high,
                         "outcome": "" if bundle == ALL else outcome(differences.mean(), tie)})
    return pd.DataFrame(rows, columns=["method", *by, "bundle", "reference", "metric", "pairs", "mean_diff", "ci_low",
                                       "ci_high", "outcome"])


def bundle_means(table: pd.DataFrame, metric: str, by: Sequence[str] = ()) -> pd.DataFrame:
    """Mean metric over seeds: one row per method (and ``by`` value), one column per bundle (in the
    table's order), only the bundles where every method has the metric."""
    means = table.groupby(["method", *by, "bundle"], sort=False, dropna=False)[metric].mean().unstack("bundle")
    return means[[bundle for bundle in table["bundle"].unique() if bundle in means]].dropna(axis=1)


def average_ranks(table: pd.DataFrame, metric: str, by: Sequence[str] = ()) -> pd.DataFrame:
    """``method, *by, bundles, average_rank, rank_<bundle>…``: rank 1 = best mean metric on a bundle,
    ties share their average rank; best average rank first."""
    means = bundle_means(table, metric, by)
    ranks = means.rank(axis=0, ascending=False, method="average")
    result = ranks.add_prefix("rank_")
    result.insert(0, "bundles", ranks.shape[1])
    result.insert(1, "average_rank", ranks.mean(axis=1))
    result.columns.name = None
    return result.reset_index().sort_values("average_rank", kind="stable", ignore_index=True)


def friedman_p(table: pd.DataFrame, metric: str, by: Sequence[str] = ()) -> float:
    """Friedman's p-value that all methods rank alike across bundles (NaN with fewer than 3 methods or
    2 bundles, or when every bundle ties every method)."""
    from scipy.stats import friedmanchisquare

    means = bundle_means(table, metric, by)
    if len(means) < 3 or means.shape[1] < 2:
        return float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):  # all tied: scipy divides 0 by 0
        return float(friedmanchisquare(*means.to_numpy()).pvalue)


def wins_ties_losses(paired: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """``method, *by, wins, ties, losses`` against the reference, counted over the bundle rows of
    ``paired_differences``."""
    per_bundle = paired[paired["bundle"] != ALL]
    counts = per_bundle.groupby(["method", *by], sort=False, dropna=False)["outcome"].value_counts()
    counts = counts.unstack(fill_value=0).reindex(columns=["win", "tie", "loss"], fill_value=0)
    counts.columns = ["wins", "ties", "losses"]
    return counts.reset_index()
