"""CAE's defaults judged on real CLIP features, against thresholds fixed before measuring.

The thresholds are issue 18's acceptance criteria, stated before the trust weighting existed: `cae` no
more than 0.01 below k-means on the image embeddings on any set, and on average at least 0.02 above the
better of k-means and TAC's training-free variant. The two fast real sets run here (seeds 0-2); the
README's table adds the three slower ones.
"""

from __future__ import annotations

import numpy as np
import pytest

from cae_core import load_bundle, run_methods
from test_real_features import real_bundle_path

SETS = ("stl10-vitb16", "food101-vitb32")
SEEDS = (0, 1, 2)
MAX_DEFICIT_TO_KMEANS = 0.01
MIN_MEAN_GAIN = 0.02


@pytest.fixture(scope="module")
def mean_acc() -> dict[str, dict[str, float]]:
    table = {}
    for name in SETS:
        bundle = load_bundle(real_bundle_path(name))
        runs = [run_methods(bundle, ["cae", "clip-kmeans", "tac-notrain"], 10, seed=seed) for seed in SEEDS]
        table[name] = {method: float(np.mean([run[method].metrics["acc"] for run in runs]))
                       for method in ("cae", "clip-kmeans", "tac-notrain")}
    return table


@pytest.mark.parametrize("name", SETS)
def test_cae_is_never_more_than_a_hundredth_below_image_kmeans(mean_acc, name):
    acc = mean_acc[name]
    assert acc["cae"] >= acc["clip-kmeans"] - MAX_DEFICIT_TO_KMEANS, (name, acc)


def test_cae_beats_the_better_baseline_on_average(mean_acc):
    gains = [acc["cae"] - max(acc["clip-kmeans"], acc["tac-notrain"]) for acc in mean_acc.values()]
    assert np.mean(gains) >= MIN_MEAN_GAIN, mean_acc
