"""The app's failures as a user meets them (AppTest): a listed demo whose bundle fails validation, opened
from Home or from a link, and a bundle whose recorded image folder may not be read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cae_core.inputs.bundle import save_bundle
from cae_core.inputs.synthetic import planted_bundle
from explorer.state import WORKSPACE_KEY

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
TIMEOUT = 300


@pytest.fixture
def broken_demo(tmp_path, monkeypatch) -> str:
    """A data folder whose one demo lists fine (its headers are sound) but has 10 labels for 60 images."""
    folder = tmp_path / "data" / "embeddings"
    folder.mkdir(parents=True)
    good = save_bundle(planted_bundle(n_images=60, n_classes=2, n_nouns=20, n_captions=20), tmp_path / "good.npz")
    arrays = dict(np.load(good))
    arrays["labels"] = arrays["labels"][:10]
    np.savez(folder / "broken.npz", **arrays)
    monkeypatch.setenv("CAE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CAE_CACHE_DIR", str(tmp_path / "cache"))
    return "broken"


def assert_refused(at: AppTest, name: str) -> None:
    assert not at.exception, [element.message for element in at.exception]
    errors = "\n".join(element.value.replace("\\", "") for element in at.error)
    assert f"the demo '{name}'" in errors and "cannot be opened" in errors, errors
    assert "labels has shape (10,) but image_embeddings has 60 rows" in errors, errors
    assert not any("Opened the" in info.value for info in at.info)
    assert at.session_state[WORKSPACE_KEY].bundle is None


def test_a_broken_demo_opened_from_home_gives_its_reason(broken_demo):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    at.button(key=f"demo-{broken_demo}").click().run()
    assert_refused(at, broken_demo)
    # the page stays usable: the planted demo opens afterwards
    at.button(key="demo-planted").click().run()
    assert not at.exception and not at.error
    assert at.session_state[WORKSPACE_KEY].demo == "planted"


def test_a_broken_demo_opened_from_a_link_gives_its_reason(broken_demo):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/5_Clusters.py")
    at.query_params["demo"] = broken_demo
    at.run()
    assert_refused(at, broken_demo)


def test_a_refused_image_folder_is_named_after_the_bundle_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("CAE_ALLOWED_ROOTS", str(tmp_path))
    monkeypatch.setenv("CAE_CACHE_DIR", str(tmp_path / "cache"))
    bundle = planted_bundle(n_images=60, n_classes=2, n_nouns=20, n_captions=20)
    bundle.metadata["image_root"] = "/etc"  # exists, but outside the readable folders
    path = save_bundle(bundle, tmp_path / "features.npz")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/1_Dataset.py")
    at.run()
    at.radio(key="bundle-how").set_value("file on the server").run()
    at.text_input(key="bundle-path").input(str(path)).run()
    at.button(key="load-bundle").click().run()
    for _ in range(2):  # after the load's rerun, and on any later rerun: the reason stays
        assert not at.exception, [element.message for element in at.exception]
        ws = at.session_state[WORKSPACE_KEY]
        assert ws.bundle is not None and ws.bundle.n_images == 60 and ws.image_root is None
        warnings = "\n".join(element.value.replace("\\", "") for element in at.warning)
        assert "No pictures: the bundle's recorded image folder cannot be used: refused to read /etc" in warnings
        at.run()
