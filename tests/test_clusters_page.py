"""AppTest of pages/5_Clusters.py: scores, confusion matrix, named clusters, method comparison, downloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from streamlit.testing.v1 import AppTest

from cae_core import run_methods
from cae_core.method import available_methods
from explorer.state import Workspace
from polysemy_data import crane_bundle

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "5_Clusters.py")


@pytest.fixture(scope="module")
def runs():
    bundle = crane_bundle()
    return bundle, run_methods(bundle, n_clusters=4)


def open_page(ws: Workspace) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["workspace"] = ws
    return at.run()


def test_scores_names_comparison_and_changes(runs):
    bundle, results = runs
    at = open_page(Workspace(bundle=bundle, n_clusters=4, results=dict(results)))
    assert not at.exception
    assert [metric.label for metric in at.metric][:3] == ["ACC", "NMI", "ARI"]
    comparison = next(frame.value for frame in at.dataframe if "description" in frame.value.columns)
    assert list(comparison["method"]) == list(available_methods(bundle))  # SAC needs per-image captions
    names = next(frame.value for frame in at.dataframe if "majority class" in frame.value.columns)
    assert len(names) == 4 and names["nouns"].str.len().gt(0).all()
    # the gallery is headed by the cluster's nouns by transport mass
    first_noun = results["cae"].cluster_texts[0].nouns[0]
    assert any(element.value.startswith("**Cluster 0:") and first_noun in element.value for element in at.markdown)
    assert any(metric.label == "Images in another cluster" for metric in at.metric)
    labels = {button.label for button in at.get("download_button")}
    assert {"assignments.csv", "clusters.json", "metrics.json", "comparison.csv"} <= labels
    assert len(at.get("plotly_chart")) == 2  # method bars and the confusion matrix


def test_switching_methods_and_pairs(runs):
    bundle, results = runs
    at = open_page(Workspace(bundle=bundle, n_clusters=4, results=dict(results)))
    at.selectbox[0].select("clip-kmeans").run()
    assert not at.exception
    assert any("aligns no texts" in caption.value for caption in at.caption)
    scores = {metric.label: metric.value for metric in at.metric}
    assert scores["ACC"] == f"{100 * results['clip-kmeans'].metrics['acc']:.1f}%"
    at.selectbox(key="change-b").select("cae-no-nouns").run()
    assert not at.exception
    # the images whose cluster differs once the second method's ids are matched to the first's (Hungarian)
    first, second = results["cae"].assignments, results["cae-no-nouns"].assignments
    overlap = np.zeros((4, 4), dtype=int)
    np.add.at(overlap, (second, first), 1)
    rows, columns = linear_sum_assignment(-overlap)
    renamed = dict(zip(rows, columns))
    moved = sum(renamed[b] != a for a, b in zip(first, second))
    changed, = [metric.value for metric in at.metric if metric.label == "Images in another cluster"]
    assert changed == f"{moved:,} of {bundle.n_images:,}"


def test_unlabelled_data_has_no_scores(runs):
    bundle, results = runs
    unlabelled = bundle.subset(range(bundle.n_images))
    unlabelled.labels = None
    at = open_page(Workspace(bundle=unlabelled, n_clusters=4, results=run_methods(unlabelled, ["cae", "clip-kmeans"],
                                                                                  n_clusters=4)))
    assert not at.exception
    assert any("no ground-truth labels" in info.value for info in at.info)
    assert not at.metric or at.metric[0].label == "Images in another cluster"


def test_without_a_run_the_page_offers_one(runs):
    bundle, _ = runs
    at = open_page(Workspace(bundle=bundle, n_clusters=4))
    assert not at.exception
    assert any("not clustered yet" in info.value for info in at.info)


def test_the_page_states_the_engines_settings_not_copies_of_them(runs, monkeypatch):
    import cae_core.method as method

    monkeypatch.setattr(method, "GRAPH_NEIGHBOURS", 7)
    monkeypatch.setattr(method, "MAX_ROWS", 1234)
    monkeypatch.setattr(method, "DEFAULT_RANGE", (3, 9))
    bundle, results = runs
    at = open_page(Workspace(bundle=bundle, n_clusters=4, results=dict(results)))
    assert not at.exception
    captions = " ".join(caption.value for caption in at.caption)
    assert "7-nearest-neighbour" in captions and "Above 1,234 images" in captions
    assert (at.number_input(key="k-low").value, at.number_input(key="k-high").value) == (3, 9)
