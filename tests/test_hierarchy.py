"""MCA's hierarchy-aware semantic space (``--space hierarchy``) and its Figure 1 for the loaded bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cae_core import CaeConfig, CaeError, FeaturesBundle, analysis, planted_bundle, run_method, run_methods
from cae_core.method.hierarchy import hierarchy_filter, lineage_lemmas
from explorer.state import Workspace
from polysemy_data import crane_bundle

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "2_Semantic_space.py")


def with_general_nouns(bundle: FeaturesBundle) -> FeaturesBundle:
    """The crane bundle plus two nouns too general to say anything ("entity", "organism")."""
    extra = bundle.noun_embeddings[:2]
    return FeaturesBundle(
        image_embeddings=bundle.image_embeddings, labels=bundle.labels, class_names=bundle.class_names,
        image_ids=bundle.image_ids, noun_embeddings=np.concatenate([bundle.noun_embeddings, extra]),
        nouns=np.concatenate([bundle.nouns, ["entity", "organism"]]),
        noun_synsets=np.concatenate([bundle.noun_synsets, ["entity.n.01", "organism.n.01"]]),
        noun_glosses=np.concatenate([bundle.noun_glosses, ["", ""]]),
        caption_embeddings=bundle.caption_embeddings, captions=bundle.captions, metadata=bundle.metadata)


def test_too_general_nouns_are_removed_and_never_selected():
    bundle = with_general_nouns(crane_bundle())
    found = hierarchy_filter(bundle.image_embeddings, bundle.noun_embeddings, bundle.noun_synsets)
    reasons = dict(zip(bundle.nouns, found.reason))
    assert reasons["entity"] == "too general (depth 0)" and reasons["organism"] == "too general (depth 5)"
    assert found.keep[: len(crane_bundle().nouns)].all()  # cranes, storks, geese, dogs: the images' concepts
    assert {"animal.n.01", "device.n.01"} <= found.concepts.keys()
    space = run_method(bundle, "cae", 4, config=CaeConfig(space="hierarchy")).semantic_space
    assert space.hierarchy is not None
    assert not set(np.flatnonzero(~found.keep)) & set(space.nouns.bank_index.tolist())
    assert (space.nouns.bank_centre[~found.keep] == -1).all()


def test_the_hierarchy_needs_synsets_and_says_so():
    with pytest.raises(CaeError, match="needs WordNet synsets"):
        run_method(planted_bundle(n_images=60, n_classes=3, dim=16, n_nouns=20, n_captions=20), "cae", 3,
                   config=CaeConfig(space="hierarchy"))
    with pytest.raises(CaeError, match="unknown semantic space"):
        CaeConfig(space="mca")


def test_right_means_the_class_or_a_kind_of_it():
    assert "airplane" in lineage_lemmas("airliner.n.01") and "dog" in lineage_lemmas("basset.n.01")
    assert "bird" not in lineage_lemmas("crane.n.04") and "bird" in lineage_lemmas("crane.n.05")
    bundle = crane_bundle()
    table = analysis.nearest_nouns(bundle, np.arange(bundle.n_images))
    assert {"image", "class", "nearest noun", "synset", "right"} <= set(table.columns)
    dogs = table[table["class"] == "dog"]
    assert dogs["right"].all() and set(dogs["nearest noun"]) <= {"dog", "puppy", "hound"}


# the two added nouns copy the two crane rows: four identical texts make Sinkhorn slow, and it says so
@pytest.mark.filterwarnings("ignore::cae_core.method.alignment.SinkhornConvergenceWarning")
def test_semantic_space_page_shows_what_the_hierarchy_removed():
    bundle = with_general_nouns(crane_bundle())
    ws = Workspace()
    ws.load(bundle, "cranes and a few general nouns", None, random_weights=False)
    ws.set_results(run_methods(bundle, ["cae"], 4))
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["workspace"] = ws
    at.run()
    at.selectbox[0].set_value("hierarchy").run()
    assert not at.exception, [element.message for element in at.exception]
    assert "What the hierarchy removed (MCA)" in [header.value for header in at.subheader]
    removed = next(frame.value for frame in at.dataframe if "noun" in frame.value.columns
                   and "reason" in frame.value.columns)
    assert set(removed["noun"]) == {"entity", "organism"}
    assert any("of these" in caption.value and "are right" in caption.value for caption in at.caption)
