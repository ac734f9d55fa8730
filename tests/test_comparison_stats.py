"""The statistics that compare methods across bundles, on hand-made tables whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2

from cae_core.analysis.comparison_stats import ALL, average_ranks, bootstrap_mean_ci, friedman_p, \
    paired_differences, wins_ties_losses


def runs(values: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    """A per-run table from ``{bundle: {method: [acc per seed 0, 1, …]}}``."""
    return pd.DataFrame([{"bundle": bundle, "method": method, "seed": seed, "acc": acc}
                         for bundle, methods in values.items() for method, accs in methods.items()
                         for seed, acc in enumerate(accs)])


def test_ranks_share_ties_and_average_over_bundles():
    # per-bundle means (two seeds each, so that ranking must use the mean over seeds):
    # A: m1 .9, m2 .8, m3 .8, m4 .7 -> 1, 2.5, 2.5, 4;  B: all .6 -> 2.5 each;  C: m4 .9, others .5 -> 3, 3, 3, 1
    table = runs({
        "A": {"m1": [0.85, 0.95], "m2": [0.8, 0.8], "m3": [0.7, 0.9], "m4": [0.7, 0.7]},
        "B": {"m1": [0.6, 0.6], "m2": [0.5, 0.7], "m3": [0.6, 0.6], "m4": [0.6, 0.6]},
        "C": {"m1": [0.5, 0.5], "m2": [0.5, 0.5], "m3": [0.4, 0.6], "m4": [0.9, 0.9]},
    })
    ranks = average_ranks(table, "acc").set_index("method")
    assert ranks.loc["m1", ["rank_A", "rank_B", "rank_C"]].tolist() == [1, 2.5, 3]
    assert ranks.loc["m2", ["rank_A", "rank_B", "rank_C"]].tolist() == [2.5, 2.5, 3]
    assert ranks.loc["m4", ["rank_A", "rank_B", "rank_C"]].tolist() == [4, 2.5, 1]
    expected = {"m1": 6.5 / 3, "m2": 8 / 3, "m3": 8 / 3, "m4": 7.5 / 3}
    assert ranks["average_rank"].to_dict() == pytest.approx(expected)
    assert list(ranks.index) == ["m1", "m4", "m2", "m3"]  # best average rank first
    assert (ranks["bundles"] == 3).all()


def test_a_constant_paired_gain_has_an_interval_that_excludes_zero():
    # the reference swings by 0.3 from seed to seed; the method is always 0.1 above it on the same seed:
    # only a comparison paired by seed sees a certain gain
    table = runs({bundle: {"ref": [0.3, 0.6, 0.9, 0.45], "m": [0.4, 0.7, 1.0, 0.55]} for bundle in ("A", "B", "C")})
    paired = paired_differences(table, "acc", "ref").set_index("bundle")
    assert list(paired.index) == ["A", "B", "C", ALL] and (paired["method"] == "m").all()
    assert paired["pairs"].tolist() == [4, 4, 4, 12]
    assert paired["mean_diff"].to_numpy() == pytest.approx(0.1)
    assert paired["ci_low"].to_numpy() == pytest.approx(0.1) and paired["ci_high"].to_numpy() == pytest.approx(0.1)
    assert (paired["ci_low"] > 0).all()
    assert paired.loc[["A", "B", "C"], "outcome"].tolist() == ["win"] * 3


def test_symmetric_noise_has_an_interval_that_includes_zero():
    table = runs({bundle: {"ref": [0.5, 0.5, 0.5, 0.5], "m": [0.6, 0.4, 0.55, 0.45]} for bundle in ("A", "B")})
    paired = paired_differences(table, "acc", "ref").set_index("bundle")
    assert paired["mean_diff"].to_numpy() == pytest.approx(0, abs=1e-12)
    assert (paired["ci_low"] < 0).all() and (paired["ci_high"] > 0).all()
    assert paired.loc[["A", "B"], "outcome"].tolist() == ["tie", "tie"]


def test_the_overall_interval_resamples_bundles_not_only_seeds():
    # every seed agrees within a bundle (+0.1 on A, -0.1 on B): resampling seeds alone would give the
    # point [0, 0]; drawing bundles gives A twice or B twice a quarter of the time each
    table = runs({"A": {"ref": [0.5, 0.5, 0.5], "m": [0.6, 0.6, 0.6]}, "B": {"ref": [0.5, 0.5, 0.5], "m": [0.4] * 3}})
    overall = paired_differences(table, "acc", "ref").set_index("bundle").loc[ALL]
    assert overall["mean_diff"] == pytest.approx(0, abs=1e-12)
    assert overall["ci_low"] == pytest.approx(-0.1) and overall["ci_high"] == pytest.approx(0.1)


def test_bundles_with_fewer_seeds_draw_only_their_own_values():
    assert bootstrap_mean_ci([np.array([0.5]), np.array([0.5, 0.5, 0.5])]) == pytest.approx((0.5, 0.5))
    low, high = bootstrap_mean_ci([np.array([1.0, 1.0, 1.0]), np.array([0.0])])
    assert (low, high) == pytest.approx((0.0, 1.0))  # B drawn twice: 0; A twice: 1


def test_pairs_are_matched_by_seed_and_grid_point_and_runs_without_the_metric_are_left_out():
    table = pd.DataFrame([
        {"bundle": "A", "method": "ref", "epsilon": 0.1, "seed": 0, "acc": 0.5},
        {"bundle": "A", "method": "ref", "epsilon": 0.1, "seed": 1, "acc": 0.7},
        {"bundle": "A", "method": "ref", "epsilon": 0.01, "seed": 0, "acc": 0.2},
        {"bundle": "A", "method": "m", "epsilon": 0.1, "seed": 1, "acc": 0.8},
        {"bundle": "A", "method": "m", "epsilon": 0.1, "seed": 0, "acc": 0.5},
        {"bundle": "A", "method": "m", "epsilon": 0.01, "seed": 0, "acc": 0.5},
        {"bundle": "A", "method": "m", "epsilon": 0.01, "seed": 1, "acc": np.nan},
    ])
    paired = paired_differences(table, "acc", "ref", ["epsilon"])
    rows = paired[paired["bundle"] == "A"].set_index("epsilon")
    assert rows.loc[0.1, "mean_diff"] == pytest.approx(0.05) and rows.loc[0.1, "pairs"] == 2
    assert rows.loc[0.01, "mean_diff"] == pytest.approx(0.3) and rows.loc[0.01, "pairs"] == 1


def test_wins_ties_and_losses_count_bundles_against_the_threshold():
    gains = {"A": 0.02, "B": 0.003, "C": -0.004, "D": -0.03, "E": 0.01}
    table = runs({bundle: {"ref": [0.5, 0.6], "m": [0.5 + gain, 0.6 + gain], "same": [0.5, 0.6]}
                  for bundle, gain in gains.items()})
    counts = wins_ties_losses(paired_differences(table, "acc", "ref")).set_index("method")
    assert counts.loc["m"].tolist() == [2, 2, 1]
    assert counts.loc["same"].tolist() == [0, 5, 0]


def test_friedman_p_matches_the_textbook_statistic_without_ties():
    # 4 bundles x 3 methods, no ties: chi2_F = 12 N / (k (k + 1)) * (sum R_j^2 - k (k + 1)^2 / 4)
    table = runs({"A": {"x": [0.9], "y": [0.8], "z": [0.7]}, "B": {"x": [0.9], "y": [0.7], "z": [0.8]},
                  "C": {"x": [0.6], "y": [0.9], "z": [0.5]}, "D": {"x": [0.9], "y": [0.8], "z": [0.7]}})
    n, k = 4, 3
    mean_ranks = np.array([(1 + 1 + 2 + 1) / 4, (2 + 3 + 1 + 2) / 4, (3 + 2 + 3 + 3) / 4])
    statistic = 12 * n / (k * (k + 1)) * (np.sum(mean_ranks ** 2) - k * (k + 1) ** 2 / 4)
    assert friedman_p(table, "acc") == pytest.approx(chi2.sf(statistic, k - 1))
    assert np.isnan(friedman_p(table[table["method"] != "z"], "acc"))  # two methods: no test
    assert np.isnan(friedman_p(table[table["bundle"] == "A"], "acc"))  # one bundle: no test
