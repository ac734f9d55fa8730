"""AppTest of pages/6_Polysemy.py: the word from the URL, its senses, and the analysis with and without a run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cae_core import run_methods
from explorer.state import Workspace
from cae_core.inputs.corpora import noun_senses
from cae_core.inputs.encoders import encode_texts
from polysemy_data import crane_bundle

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "6_Polysemy.py")
TIMEOUT = 120  # the first WordNet read parses its index


@pytest.fixture(scope="module")
def crane_workspace_factory():
    bundle = crane_bundle()
    results = run_methods(bundle, n_clusters=4)

    def make(with_results: bool = True) -> Workspace:
        return Workspace(bundle=bundle, dataset_name="planted cranes", n_clusters=4,
                         results=dict(results) if with_results else {})
    return make


def open_page(word: str | None, ws: Workspace | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    if word is not None:
        at.query_params["word"] = word
    if ws is not None:
        at.session_state["workspace"] = ws
    return at.run()


def frames_text(at: AppTest) -> str:
    return "\n".join(frame.value.to_string() for frame in at.dataframe)


def page_text(at: AppTest) -> str:
    return "\n".join(str(element.value) for kind in ("markdown", "caption", "info", "subheader")
                     for element in getattr(at, kind))


@pytest.mark.parametrize("word, glosses", [
    ("crane", ("large long-necked wading bird", "lifts and moves heavy objects")),
    ("tank", ("an enclosed armored military vehicle", "a large (usually metallic) vessel for holding gases")),
])
def test_a_word_link_opens_a_demo_with_the_words_senses(word, glosses):
    at = open_page(word)  # a new session arriving from ``?word=...``: nothing loaded before
    assert not at.exception, [element.message for element in at.exception]
    assert at.text_input(key="polysemy-word").value == word
    frames = frames_text(at)
    for gloss in glosses:
        assert gloss in frames
    assert any("Opened the" in info.value for info in at.info)  # the default demo, not an empty page
    assert at.session_state["workspace"].results
    assert any("in this bundle's noun bank" in header.value for header in at.subheader)


def test_without_data_the_caption_corpus_is_searched():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["polysemy-word"] = "crane"  # reached from the sidebar: no link, nothing loaded
    at.run()
    assert not at.exception
    assert at.session_state["workspace"].bundle is None
    assert "wading bird" in frames_text(at)
    assert "Caption corpus" in [box.label for box in at.selectbox]
    assert "mention" in page_text(at) + "\n".join(str(element.value) for element in at.markdown)


def test_crane_on_a_loaded_run(crane_workspace_factory):
    at = open_page("crane", crane_workspace_factory())
    assert not at.exception
    text = page_text(at)
    assert "wading bird" in frames_text(at)
    # both look-alike classes are matched to the noun, each with captions of its own sense
    assert "black stork" in text and "crane" in text
    frames = frames_text(at)
    assert "construction site" in frames and "marsh" in frames
    assert any("representation" in frame.value.columns and set(frame.value["representation"]) ==
               {"image", "noun", "caption", "fused"} for frame in at.dataframe)
    # the pair defaults to one image of each class and shows all four cosines
    assert at.number_input(key="pair-first").value != at.number_input(key="pair-second").value


def test_tank_has_no_images_but_keeps_the_senses(crane_workspace_factory):
    at = open_page("tank", crane_workspace_factory())
    assert not at.exception
    assert "armored military vehicle" in frames_text(at)
    assert any("No image of planted cranes" in info.value for info in at.info)
    assert any("0 of the bundle's 7 captions" in str(element.value) for element in at.markdown)


def test_loaded_data_without_a_run(crane_workspace_factory):
    at = open_page("crane", crane_workspace_factory(with_results=False))
    assert not at.exception
    assert any("Run CAE" in info.value for info in at.info)
    assert "wading bird" in frames_text(at)
    assert any("3 of the bundle's 7 captions" in str(element.value) for element in at.markdown)


def test_the_url_follows_the_word(crane_workspace_factory):
    at = open_page(None, crane_workspace_factory())
    assert at.query_params["word"] == "crane"  # the first preset, written into the URL
    at.text_input(key="polysemy-word").input("spaniel").run()
    assert not at.exception and at.query_params["word"] == "spaniel"
    assert "gun dogs" in frames_text(at)
    at.button(key="preset-tank").click().run()
    assert not at.exception and at.query_params["word"] == "tank"
    assert at.text_input(key="polysemy-word").value == "tank"


def similarity_frames(at: AppTest) -> list:
    return [frame.value for frame in at.dataframe if {"caption", "closest"} <= set(frame.value.columns)]


def test_glosses_encoded_by_the_bundles_model(clip_model_name, clip_checkpoint, clip_model):
    """A bundle whose metadata names a (random-weight) checkpoint: the page loads that model, encodes each
    sense's gloss and compares it with the captions, which the same model encoded."""
    planted = crane_bundle(per_class=4, dim=clip_model.model.text_projection.shape[1])
    bundle = dataclasses.replace(
        planted, caption_embeddings=encode_texts(clip_model, planted.captions, cache=False),
        metadata={"model": clip_model_name, "pretrained": str(clip_checkpoint),
                  "checkpoint": clip_model.checkpoint_fingerprint})
    at = open_page("crane", Workspace(bundle=bundle, dataset_name="planted cranes", random_weights=True))
    assert not at.exception
    assert any("Random weights" in warning.value for warning in at.warning)
    [table] = similarity_frames(at)
    senses = [sense["synset"] for sense in noun_senses("crane")]
    assert len(senses) == 5 and {"crane.n.04", "crane.n.05"} <= set(senses)
    assert list(table.columns) == ["caption", *senses, "closest"]
    assert len(table) == 3 and table["caption"].str.contains("crane", case=False).all()
    cosines = table[senses].to_numpy(dtype=float)
    assert ((-1 <= cosines) & (cosines <= 1)).all() and cosines.std() > 0  # the senses differ now
    assert set(table["closest"]) <= set(senses) and (table["closest"] != "").all()
    shown = page_text(at).replace("\\", "")  # markdown escapes
    assert "crane: …" in shown and clip_model_name in shown
    assert not any("cannot be compared" in info.value for info in at.info)


@pytest.mark.parametrize("metadata, reason", [
    ({"synthetic": "crane"}, "names no CLIP model"),
    ({"model": "ViT-S-32-alt", "pretrained": "/nowhere/gone.pt", "checkpoint": "file:/nowhere/gone.pt:1:2"},
     "checkpoint file not found"),
])
def test_without_a_loadable_model_the_captions_are_listed(crane_workspace_factory, metadata, reason):
    ws = crane_workspace_factory(with_results=False)
    ws.bundle = dataclasses.replace(ws.bundle, metadata=metadata)
    at = open_page("crane", ws)
    assert not at.exception and not at.error
    assert any("cannot be compared" in info.value and reason in info.value for info in at.info)
    assert not similarity_frames(at)
    assert any(list(frame.value.columns) == ["caption"] and len(frame.value) == 3 for frame in at.dataframe)
