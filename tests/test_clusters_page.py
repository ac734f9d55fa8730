"""AppTest of pages/5_Clusters.py: scores, confusion matrix, named clusters, method comparison, downloads."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cae_core import METHODS, run_methods
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
    assert list(comparison["method"]) == list(METHODS)
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
    at.selectbox(key="change-b").select("cae-no-nouns").run()
    assert not at.exception


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
