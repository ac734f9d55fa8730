"""Several browser sessions at once: each has its own state, and a long run in one does not block the others.

Two AppTest sessions (a bundle loaded in one leaves the other empty), then the served app with two headless
Chromium drivers: session A's run is held (``held_app.py``) while session B opens two pages, which must settle;
then A's run is released and ends. The browser test reuses the server, driver and page helpers of
``test_browser.py`` and is skipped where those are (no selenium, chromium or chromedriver).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from cae_core.inputs.bundle import save_bundle
from cae_core import METHODS
from cae_core.inputs.synthetic import planted_bundle
from explorer.state import WORKSPACE_KEY
from test_app import open_page, private_cache  # noqa: F401  (private_cache: autouse, caches in a temp folder)

try:
    # ``second_browser`` is the same fixture under another name: a second driver, i.e. a second session
    from test_browser import (browser, browser as second_browser, check, click_text, load_bundle_from_server,  # noqa: F401
                              planted_cifar_bundle, serve_app)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    NO_BROWSER = None
except pytest.skip.Exception as why:  # test_browser.py skips itself without selenium, chromium or chromedriver
    NO_BROWSER = str(why)

DATASET_PAGE = "pages/1_Dataset.py"
# the held app's bundle has no per-image captions: every method but SAC's runs
RUN_BUTTON = f"Run CAE and {sum(not spec.needs_own_captions for spec in METHODS.values()) - 1} baselines"


def load_through_dataset_page(at, bundle_path) -> None:
    """Load a bundle from a server path with the Dataset page's widgets, as a user does."""
    at.radio(key="bundle-how").set_value("file on the server").run()
    at.text_input(key="bundle-path").input(str(bundle_path)).run()
    at.button(key="load-bundle").click().run()


def test_each_apptest_session_has_its_own_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("CAE_ALLOWED_ROOTS", str(tmp_path))
    bundle_path = save_bundle(planted_bundle(n_images=40, n_classes=4, dim=32, n_nouns=20, n_captions=30),
                              tmp_path / "small.npz")
    first, second = open_page(DATASET_PAGE), open_page(DATASET_PAGE)
    load_through_dataset_page(first, bundle_path)
    assert not first.exception, [e.message for e in first.exception]
    assert first.session_state[WORKSPACE_KEY].bundle.n_images == 40

    second.run()  # the other session reruns after the load: still nothing
    home = open_page(None)  # and a session opened afterwards starts empty too
    for at in (second, home):
        assert not at.exception, [e.message for e in at.exception]
        assert at.session_state[WORKSPACE_KEY].bundle is None
    assert any("Nothing is loaded in this session" in info.value for info in home.info)
    assert first.session_state[WORKSPACE_KEY] is not second.session_state[WORKSPACE_KEY]

    first.switch_page("pages/5_Clusters.py").run()  # the first session keeps its bundle across pages
    assert first.session_state[WORKSPACE_KEY].bundle.n_images == 40
    assert not any("Nothing is loaded" in info.value for info in first.info)


def running(driver) -> bool:
    """The session's script is still running (Streamlit's running indicator is shown)."""
    return bool(driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]'))


@pytest.fixture(scope="module")
def held_server(tmp_path_factory):
    """The app served by ``held_app.py``: every clustering run waits at its fusion stage until the test
    creates the release file. The run lasts as long as the test needs, on any machine."""
    folder = tmp_path_factory.mktemp("held")
    release = folder / "release"
    with serve_app(folder, [sys.executable, str(Path(__file__).with_name("held_app.py"))],
                   {"CAE_TEST_RELEASE": str(release)}) as url:
        yield url, planted_cifar_bundle(folder), release


@pytest.mark.skipif(NO_BROWSER is not None, reason=str(NO_BROWSER))
def test_a_long_run_does_not_block_another_session(held_server, browser, second_browser):
    url, bundle_path, release = held_server
    a, b = browser, second_browser

    load_bundle_from_server(a, url, bundle_path)
    click_text(a, "button", RUN_BUTTON)
    WebDriverWait(a, 60, poll_frequency=0.2).until(
        lambda d: "Clustering 300 images" in d.page_source and running(d))

    # A's run is held until the release file exists: B must settle meanwhile (check() fails after its
    # timeout if B waits on A), whatever the speed of the machine
    b.get(url)
    check(b, "CAE Explorer", "sessions-B-Home")
    assert "Nothing is loaded in this session" in b.page_source  # B does not see A's bundle
    links = b.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')
    next(link for link in links if link.get_attribute("href").rstrip("/").endswith("Clusters")).click()
    check(b, "Clusters", "sessions-B-Clusters")
    assert running(a) and not re.search(r"done in [0-9.]+ s", a.page_source), "A's held run ended before release"

    release.touch()  # now A's run goes on and ends
    WebDriverWait(a, 240, poll_frequency=0.5).until(lambda d: re.search(r"done in [0-9.]+ s", d.page_source))
