"""Choosing K (``--clusters auto``) and label-free cluster quality.

Planted classes test the mechanics (a criterion finds well-separated groups, validation, files); whether
the estimate is right on CLIP features is tested on the real bundles in ``test_real_features.py``.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import pytest

from cae_core import CaeError, planted_bundle, run_method, save_bundle
from cae_core.analysis import cluster_count_figure, cluster_quality, true_cluster_count
from cae_core.cli import main
from cae_core.method import CLUSTER_COUNT_CRITERIA, choose_n_clusters, estimate_n_clusters, represent


def separated_groups(n_groups: int, per_group: int = 40, dim: int = 32, spread: float = 0.15, seed: int = 0):
    """Unit rows in ``n_groups`` tight groups around orthogonal directions, and their group."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_groups), per_group)
    points = np.eye(dim)[labels] + spread * rng.normal(size=(len(labels), dim))
    return points / np.linalg.norm(points, axis=1, keepdims=True), labels


def plotted_figure(html: str) -> tuple[list[dict], dict]:
    """The traces and layout a plotly HTML page draws (``Plotly.newPlot(id, data, layout, ...)``), arrays decoded."""
    decoder = json.JSONDecoder()
    position = html.index("Plotly.newPlot(") + len("Plotly.newPlot(")
    values = []
    for _ in range(3):  # the element id, the traces, the layout
        position = len(html) - len(html[position:].lstrip(" \n,"))
        value, position = decoder.raw_decode(html, position)
        values.append(value)

    def decoded(node):
        if isinstance(node, dict) and set(node) == {"dtype", "bdata"}:  # plotly's typed arrays
            return np.frombuffer(base64.b64decode(node["bdata"]), dtype=node["dtype"]).tolist()
        if isinstance(node, dict):
            return {key: decoded(value) for key, value in node.items()}
        return [decoded(value) for value in node] if isinstance(node, list) else node
    return decoded(values[1]), decoded(values[2])


@pytest.mark.parametrize("criterion", CLUSTER_COUNT_CRITERIA)
@pytest.mark.parametrize("n_groups", [3, 7])
def test_each_criterion_finds_well_separated_groups(criterion, n_groups):
    points, _ = separated_groups(n_groups)
    estimate = estimate_n_clusters(points, (2, 12), criterion=criterion, n_init=3)
    assert estimate.best == n_groups
    assert list(estimate.ks) == list(range(2, 13)) and len(estimate.scores) == 11
    assert estimate.scores.argmax() == n_groups - 2


def test_the_estimate_is_reproducible_and_samples_large_sets():
    points, _ = separated_groups(5, per_group=60)
    first = estimate_n_clusters(points, (2, 8), max_rows=150, seed=3)
    again = estimate_n_clusters(points, (2, 8), max_rows=150, seed=3)
    assert first.n_rows == 150 and np.array_equal(first.scores, again.scores) and first.best == 5


@pytest.mark.parametrize("k_range, message", [((1, 5), "2 <= low"), ((6, 4), "2 <= low"),
                                              ((2, 500), "lower the top of the range")])
def test_bad_ranges_are_refused_up_front(k_range, message):
    points, _ = separated_groups(3)
    with pytest.raises(CaeError, match=message):
        estimate_n_clusters(points, k_range)


def test_an_unknown_criterion_is_refused():
    with pytest.raises(CaeError, match="unknown criterion"):
        estimate_n_clusters(separated_groups(3)[0], criterion="gap-statistic")


def test_choose_n_clusters_scores_the_methods_features_with_a_space_sized_for_the_top_of_the_range():
    bundle = planted_bundle(n_images=600, n_classes=6, dim=64, n_nouns=120, n_captions=120, seed=1)
    estimate, n_centres = choose_n_clusters(bundle, "cae", (2, 12))
    assert n_centres == 36  # 600/300 = 2 < 12: the 3K floor for the largest K tried
    assert estimate.best == 6


def test_cluster_quality_reads_tight_and_loose_clusters_without_labels():
    points, labels = separated_groups(4)
    noisy = labels.copy()
    noisy[::4] = (noisy[::4] + 1) % 4  # a quarter of the rows in the wrong cluster
    good, bad = cluster_quality(points, labels), cluster_quality(points, noisy)
    assert list(good["cluster"]) == ["0", "1", "2", "3", "all"] and good["size"].iloc[-1] == len(points)
    assert good["silhouette"].iloc[-1] > 0.5 > bad["silhouette"].iloc[-1]
    assert good["cohesion"].iloc[-1] > bad["cohesion"].iloc[-1]


def test_the_figure_marks_the_estimate_and_the_true_count():
    estimate = estimate_n_clusters(separated_groups(3)[0], (2, 6))
    figure = cluster_count_figure(estimate, true_k=4)
    texts = [shape.text for shape in figure.layout.annotations]
    assert "estimated K = 3" in texts and "true K = 4" in texts


def test_cli_clusters_auto_estimates_then_runs_and_writes_the_criterion(tmp_path, capsys):
    bundle = planted_bundle(n_images=600, n_classes=6, dim=64, n_nouns=120, n_captions=120, seed=1)
    path = save_bundle(bundle, tmp_path / "planted.npz")
    assert main(["cluster", "--features", str(path), "--clusters", "auto", "--k-range", "2:12",
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "estimated K = 6 (eigengap over 2..12" in err and "the labels have 6 classes: off by +0" in err
    table = pd.read_csv(tmp_path / "out" / "cluster_count.csv")
    assert list(table["k"]) == list(range(2, 13)) and table.loc[table["chosen"], "k"].tolist() == [6]
    # the page plots the criterion of the CSV against K, and marks the estimate and the true count
    data, layout = plotted_figure((tmp_path / "out" / "cluster_count.html").read_text())
    curve, = data
    assert curve["name"] == "eigengap" and list(curve["x"]) == list(table["k"])
    np.testing.assert_allclose(curve["y"], table["eigengap"])
    assert {note["text"] for note in layout["annotations"]} == {"estimated K = 6", "true K = 6"}
    assignments = pd.read_csv(tmp_path / "out" / "assignments.csv")
    assert assignments["cluster"].nunique() == 6
    assert true_cluster_count(bundle) == 6


def test_cli_refuses_a_bad_cluster_count_with_one_line(tmp_path, capsys):
    path = save_bundle(planted_bundle(n_images=60, n_classes=3, dim=16, n_nouns=20, n_captions=20),
                       tmp_path / "small.npz")
    with pytest.raises(SystemExit):
        main(["cluster", "--features", str(path), "--clusters", "some", "--out", str(tmp_path)])
    assert "expected a number of clusters or 'auto'" in capsys.readouterr().err
    assert main(["cluster", "--features", str(path), "--clusters", "auto", "--k-range", "2:80",
                 "--out", str(tmp_path), "--quiet"]) == 2
    assert "cannot try 80 clusters on 60 images" in capsys.readouterr().err


def test_represent_gives_the_features_the_run_clusters():
    bundle = planted_bundle(n_images=300, n_classes=3, dim=32, n_nouns=60, n_captions=60)
    result = run_method(bundle, "cae", 3)
    made = represent(bundle, "cae", result.semantic_space.n_centres)
    assert np.array_equal(made.features, result.features)
    with pytest.raises(CaeError, match="give n_centres"):
        represent(bundle, "cae")
