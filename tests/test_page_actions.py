"""The pages' actions through AppTest, checked by what they change and show: the Semantic space page's "Use these
settings", the Clusters page's "Run every method with K", and Correspondences browsing by cluster, class and noun."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cae_core import run_methods
from cae_core.method import available_methods
from cae_core.method import choose_n_clusters
from explorer.state import WORKSPACE_KEY, Workspace
from polysemy_data import crane_bundle

STEPS = Path(__file__).resolve().parents[1] / "pages"


@pytest.fixture(scope="module")
def crane():
    bundle = crane_bundle()
    return bundle, run_methods(bundle, n_clusters=4)


def open_page(name: str, ws: Workspace) -> AppTest:
    at = AppTest.from_file(str(STEPS / name), default_timeout=180)
    at.session_state[WORKSPACE_KEY] = ws
    return at.run()


def clean(at: AppTest) -> AppTest:
    assert not at.exception, [element.message for element in at.exception]
    assert not at.error, [element.value for element in at.error]
    return at


def shown_image(at: AppTest) -> int:
    """The image index the Correspondences page is showing ("Image index 12 of 160; file: ...")."""
    caption, = [caption.value for caption in at.caption if caption.value.startswith("Image index ")]
    return int(caption.split()[2])


def test_use_these_settings_reruns_every_method_with_the_semantic_space_shown(crane):
    bundle, results = crane
    ws = Workspace(bundle=bundle, n_clusters=4, results=dict(results))
    at = clean(open_page("2_Semantic_space.py", ws))
    assert any(caption.value == "These are the settings of the current clustering run." for caption in at.caption)
    n_centres = results["cae"].semantic_space.n_centres
    at.number_input[0].set_value(n_centres + 2).run()
    at.number_input[1].set_value(3).run()
    apply, = [button for button in at.button if button.label.startswith("Use these settings")]
    apply.click().run()
    clean(at)
    ws = at.session_state[WORKSPACE_KEY]
    assert (ws.config.n_centres, ws.config.texts_per_centre) == (n_centres + 2, 3)
    assert set(ws.results) == set(available_methods(ws.bundle))
    space = ws.results["cae"].semantic_space
    assert space.n_centres == n_centres + 2
    # at most 3 texts kept per centre, in each bank
    assert np.bincount(space.nouns.centre).max() <= 3 and np.bincount(space.captions.centre).max() <= 3
    at.run()  # the page now shows the run's own settings: nothing left to apply
    assert not [button for button in at.button if button.label.startswith("Use these settings")]


def test_run_every_method_with_the_estimated_k(crane):
    bundle, results = crane
    estimate, _ = choose_n_clusters(bundle, "cae", (2, 8))
    other_k = 2 if estimate.best != 2 else 3  # a run at another K than the estimate, so the page offers it
    ws = Workspace(bundle=bundle, n_clusters=other_k, results=run_methods(bundle, n_clusters=other_k))
    at = clean(open_page("5_Clusters.py", ws))
    at.number_input(key="k-high").set_value(8).run()
    at.button(key="k-estimate").click().run()
    clean(at)
    assert any(f"Estimated **K = {estimate.best}**" in markdown.value for markdown in at.markdown)
    at.button(key="k-run").click().run()
    clean(at)
    ws = at.session_state[WORKSPACE_KEY]
    assert ws.n_clusters == estimate.best and set(ws.results) == set(available_methods(ws.bundle))
    assert {result.n_clusters for result in ws.results.values()} == {estimate.best}
    assert len(ws.results["cae"].cluster_texts) == estimate.best


def test_correspondences_browse_by_cluster_class_and_noun(crane):
    bundle, results = crane
    result = results["cae"]
    at = clean(open_page("3_Correspondences.py", Workspace(bundle=bundle, n_clusters=4, results=dict(results))))
    assert at.number_input[0].max == bundle.n_images and shown_image(at) == 0

    at.radio(key="correspondences-mode").set_value("by cluster").run()
    cluster_box, = [box for box in at.selectbox if box.label == "Cluster"]
    cluster_box.set_value(2).run()
    members = np.flatnonzero(result.assignments == 2)
    assert at.number_input[0].max == len(members) and shown_image(clean(at)) == members[0]

    at.radio(key="correspondences-mode").set_value("by class").run()
    class_box, = [box for box in at.selectbox if box.label == "Class"]
    class_box.set_value(3).run()
    of_class = np.flatnonzero(bundle.labels == 3)
    assert at.number_input[0].max == len(of_class) and shown_image(clean(at)) == of_class[0]

    at.radio(key="correspondences-mode").set_value("by noun").run()
    noun_box, = [box for box in at.selectbox if box.label.startswith("Noun")]
    noun_box.set_value("crane").run()
    clean(at)
    # images with a "crane" row among their 3 heaviest nouns, the heaviest such mass first (computed here)
    alignment, texts = result.noun_alignment, result.semantic_space.nouns.texts
    is_crane = texts[alignment.top_text[:, :3]] == "crane"
    mass = (alignment.top_weight[:, :3] * is_crane).sum(axis=1)
    matching = np.flatnonzero(is_crane.any(axis=1))
    expected = matching[np.argsort(-mass[matching], kind="stable")]
    assert len(expected) and at.number_input[0].max == len(expected) and shown_image(at) == expected[0]
    assert any("among their 3 heaviest OT-matched nouns" in caption.value for caption in at.caption)
    at.button[1].click().run()  # next ▶ walks the same list
    assert shown_image(clean(at)) == expected[1]
