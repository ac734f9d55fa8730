"""The app in a real browser: `streamlit run app.py` served, every page opened in headless Chromium.

First every page as a new visitor sees it, then one session that loads a bundle through the Dataset page,
runs CAE and walks the pages through the sidebar. No page may show an exception box; a screenshot of
each is saved to ``artifacts/screenshots/`` for people to look at. ~1-2 min.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

import cifar_data
from cae_core import METHODS, data_dir, save_bundle

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CIFAR = cifar_data.CIFAR
PAGES = {"": "CAE Explorer", "Dataset": "Dataset", "Semantic_space": "Semantic space",
         "Correspondences": "Correspondences", "Embedding_map": "Embedding map", "Clusters": "Clusters",
         "Polysemy": "Polysemy", "Search": "Search", "Runs": "Runs"}

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def planted_cifar_bundle(folder: Path) -> Path:
    """A features bundle in ``folder`` with planted embeddings whose images are real CIFAR-10 pictures."""
    bundle = cifar_data.planted_cifar_bundle()
    bundle.metadata.update(image_root=str(CIFAR), image_source="cifar10-test (planted embeddings)")
    return save_bundle(bundle, folder / "features.npz")


@contextlib.contextmanager
def serve_app(folder: Path, launcher: list[str] | None = None, env: dict[str, str] | None = None) -> Iterator[str]:
    """Serve the app (``streamlit run app.py``, or ``launcher`` given the same arguments) with ``folder`` as
    its allowed root and cache; yields its URL once it answers its health check."""
    port = free_port()
    env = {**os.environ, "CAE_DATA_DIR": str(data_dir()), "CAE_CACHE_DIR": str(folder / "cache"),
           "CAE_ALLOWED_ROOTS": str(folder), **(env or {})}
    command = launcher or [sys.executable, "-m", "streamlit", "run", "app.py"]
    process = subprocess.Popen([*command, "--server.headless", "true", "--server.port", str(port),
                                "--browser.gatherUsageStats", "false"],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("streamlit did not start:\n" + process.stdout.read().decode()) from None
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A served app whose allowed roots include a folder holding a features bundle of real CIFAR images."""
    folder = tmp_path_factory.mktemp("browser")
    bundle_path = planted_cifar_bundle(folder)
    with serve_app(folder) as url:
        yield url, bundle_path


def chromium(profile: Path):
    """Headless Chromium through chromedriver, its profile in ``profile``."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--window-size=1400,2200", f"--user-data-dir={profile}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    return driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def settle(driver, title: str, timeout: float = 240) -> float:
    """Wait until the page's title is drawn and the script has stopped running; returns the seconds waited."""
    started = time.monotonic()
    # Streamlit redraws elements while a script runs: a vanished element is retried, not a failure
    wait = WebDriverWait(driver, timeout, poll_frequency=0.25, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(lambda d: any(title == h.text.strip() for h in d.find_elements(By.CSS_SELECTOR, "h1")))
    # the running indicator appears while the script runs; it must stay away for a moment to count as idle
    quiet_since = None
    while time.monotonic() - started < timeout:
        running = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.5:
            return quiet_since - started
        time.sleep(0.25)
    raise TimeoutException(f"page {title!r} still running after {timeout} s")


def check(driver, title: str, screenshot: str) -> float:
    seconds = settle(driver, title)
    time.sleep(0.5)  # plotly draws after the script ends
    driver.save_screenshot(str(SCREENSHOTS / f"{screenshot}.png"))
    boxes = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert not boxes, f"{title}: exception shown: {[box.text[:300] for box in boxes]}"
    return seconds


def test_every_page_opens_for_a_new_visitor(server, browser):
    url, _ = server
    times = {}
    for path, title in PAGES.items():
        browser.get(f"{url}/{path}")
        times[title] = check(browser, title, f"empty-{path or 'Home'}")
    print("seconds until settled:", {title: round(seconds, 1) for title, seconds in times.items()})


def click_text(driver, selector: str, text: str) -> None:
    """Click the first element matching ``selector`` whose visible text contains ``text``."""
    def click(d) -> bool:
        match = next((e for e in d.find_elements(By.CSS_SELECTOR, selector) if text in e.text), None)
        if match is not None:
            match.click()
        return match is not None

    WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,)).until(click)


def type_into(driver, label: str, text: str) -> None:
    field = driver.find_element(By.CSS_SELECTOR, f'input[aria-label="{label}"]')
    field.clear()
    field.send_keys(text, Keys.ENTER)


def load_bundle_from_server(driver, url: str, bundle_path) -> None:
    """Open the Dataset page and load a bundle by its path on the server, as a user would."""
    driver.get(f"{url}/Dataset")
    settle(driver, "Dataset")
    click_text(driver, '[role="tab"]', "Load a features bundle")
    click_text(driver, '[data-testid="stRadio"] label', "file on the server")
    settle(driver, "Dataset")
    type_into(driver, "Features bundle (.npz) on the server", str(bundle_path))
    settle(driver, "Dataset")
    click_text(driver, "button", "Load the bundle")
    settle(driver, "Dataset")


def test_a_session_loads_a_bundle_runs_and_walks_the_pages(server, browser):
    url, bundle_path = server
    load_bundle_from_server(browser, url, bundle_path)
    click_text(browser, "button", f"Run CAE and {sum(not spec.needs_own_captions for spec in METHODS.values()) - 1} baselines")
    settle(browser, "Dataset")
    check(browser, "Dataset", "loaded-Dataset")
    times = {}
    for path, title in PAGES.items():
        if path in ("", "Dataset"):
            continue
        # the sidebar keeps the session (a typed URL would open a new one, with nothing loaded)
        links = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')
        next(a for a in links if a.get_attribute("href").rstrip("/").endswith(path)).click()
        times[title] = check(browser, title, f"loaded-{path}")
    assert "Nothing is loaded" not in browser.page_source
    print("seconds until settled:", {title: round(seconds, 1) for title, seconds in times.items()})


REAL_DEMO = data_dir() / "embeddings" / "stl10-vitb16" / "stl10-vitb16.npz"
needs_real_demo = pytest.mark.skipif(not REAL_DEMO.is_file(), reason=f"the real demo bundle is not at {REAL_DEMO}")
AIRCRAFT = ("airliner", "warplane", "airship", "wing", "space_shuttle")


@needs_real_demo
def test_the_real_demo_is_one_click_from_home_and_every_page_shows_real_words(server, browser):
    url, _ = server
    browser.get(url)
    settle(browser, "CAE Explorer")
    browser.find_element(By.CSS_SELECTOR, ".st-key-demo-stl10-vitb16 button").click()
    check(browser, "CAE Explorer", "demo-Home")
    assert "?demo=stl10-vitb16" in browser.current_url  # the demo's link, to share
    assert "stl10 sample (200 images)" in browser.page_source and "cae-no-captions" in browser.page_source
    sources = {}
    for path, title in PAGES.items():
        if not path:
            continue
        links = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')
        next(a for a in links if a.get_attribute("href").rstrip("/").endswith(path)).click()
        check(browser, title, f"demo-{path}")
        sources[path] = browser.page_source
        assert "Nothing is loaded" not in sources[path] and "noun 3-" not in sources[path]
    # tables are drawn on a canvas; words in headings, labels and plain text are in the page's DOM
    assert any(word in sources["Clusters"] for word in AIRCRAFT), "no cluster named with an aircraft word"
    assert re.search(r"cluster \d+ · \d+ images · [A-Za-z]", sources["Correspondences"])  # named by real nouns
    assert sources["Dataset"].count("<img") >= 8  # real pictures


@needs_real_demo
@pytest.mark.parametrize("word", ["crane", "tank"])
def test_a_word_link_opens_the_default_demo_with_the_words_senses(server, browser, word):
    url, _ = server
    browser.get(f"{url}/Polysemy?word={word}")  # a new session: nothing loaded before the link
    check(browser, "Polysemy", f"demo-link-{word}")
    source = browser.page_source
    assert "Nothing is loaded" not in source and "Opened the" in source
    first_link = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')[0]
    assert first_link.text.strip().endswith("Home")  # never "app", however the session started
    if word == "crane":
        assert "crane.n.04" in source and "crane.n.05" in source  # both senses, as separate bank rows
        assert "GPT-3 descriptions of a construction crane" in source and "GPT-3 descriptions of a crane bird" in source
    else:
        assert f"one sense of “{word}” only" in source


def no_dialog(driver) -> None:
    dialogs = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stDialog"]')
    assert not dialogs, [dialog.text[:200] for dialog in dialogs]  # e.g. "Page not found"


@needs_real_demo
@pytest.mark.parametrize("link, title", [("Polysemy?word=crane", "Polysemy"), ("Dataset", "Dataset")])
def test_a_fresh_server_opened_on_a_page_link_reads_home_in_the_sidebar(tmp_path, browser, link, title):
    """The first request a new server gets is a page link: Streamlit's folder convention for pages/ would draw
    that run's sidebar (first entry "app"); the app's own navigation must draw it instead, on the same page."""
    with serve_app(tmp_path) as url:
        browser.get(f"{url}/{link}")
        check(browser, title, f"fresh-server-{title}")
        time.sleep(1)  # a dialog comes after the page
        no_dialog(browser)
        links = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')
        titles = [link.text.strip().splitlines()[-1] for link in links]  # an icon's name may come first
        assert titles == ["Home"] + [title for path, title in PAGES.items() if path]
        assert browser.current_url.endswith(f"/{link}")
        if title == "Polysemy":
            source = browser.page_source
            assert "crane.n.04" in source and "crane.n.05" in source


HIGHLIGHTED_JS = """return Array.from(document.querySelectorAll('.js-plotly-plot')).map(g => {
    const t = g.data.find(trace => trace.name === 'selection'); return t ? Array.from(t.ids).map(Number) : null; })"""


def lasso_around_a_point(driver, chart_index: int, half_side: int = 40) -> None:
    """Draw a lasso (an octagon of ``half_side`` pixels) around the first point of the chart's first trace,
    with the mouse, as a user does; plotly's pixel position of that point comes from its axes."""
    from selenium.webdriver.common.action_chains import ActionChains

    chart = driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")[chart_index]
    # _fullData: the decoded arrays (the figure's travel base64-encoded)
    x, y = driver.execute_script("""const g = arguments[0], t = g._fullData[0], xa = g._fullLayout.xaxis,
        ya = g._fullLayout.yaxis; return [xa.l2p(t.x[0]), ya.l2p(t.y[0])];""", chart)
    drag = chart.find_element(By.CSS_SELECTOR, ".nsewdrag")
    width, height = drag.size["width"], drag.size["height"]
    start_x, start_y = x - width / 2 - half_side, y - height / 2  # offsets from the drag layer's centre
    actions = ActionChains(driver).move_to_element_with_offset(drag, int(start_x), int(start_y)).click_and_hold()
    corners = [(-1, 0), (-0.7, -0.7), (0, -1), (0.7, -0.7), (1, 0), (0.7, 0.7), (0, 1), (-0.7, 0.7), (-1, 0)]
    position = corners[0]
    for corner in corners[1:]:
        actions.move_by_offset(int((corner[0] - position[0]) * half_side), int((corner[1] - position[1]) * half_side))
        position = corner
    actions.release().perform()


@needs_real_demo
def test_a_lasso_in_one_map_selects_the_same_images_in_every_map_the_gallery_and_the_download(server, browser,
                                                                                             tmp_path):
    url, _ = server
    browser.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    browser.get(f"{url}/Embedding_map?demo=stl10-vitb16")
    check(browser, "Embedding map", "map-before-lasso")
    assert browser.execute_script(HIGHLIGHTED_JS) == [None] * 4  # four maps, nothing highlighted yet
    lasso_around_a_point(browser, chart_index=0)
    check(browser, "Embedding map", "map-after-lasso")

    highlighted = browser.execute_script(HIGHLIGHTED_JS)
    chosen = sorted(highlighted[0] or [])
    assert chosen, "the lasso selected nothing"
    assert all(sorted(ids or []) == chosen for ids in highlighted), highlighted  # every map shows the same images
    assert f"{len(chosen)} images selected" in browser.page_source
    # the thumbnails' captions ("#index · class", or "#index" unlabelled) are the page's only "#number" text
    shown_text = browser.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text
    gallery = [int(found) for found in re.findall(r"#(\d+)\b", shown_text)]
    assert gallery == chosen[:48], (gallery, chosen)

    click_text(browser, "button", "Download the selection (CSV)")
    download = tmp_path / "selection.csv"
    WebDriverWait(browser, 30).until(lambda _: download.is_file() and download.stat().st_size > 0)
    import pandas as pd
    rows = pd.read_csv(download)
    assert sorted(rows["index"]) == chosen
    assert {"image_id", "cluster", "cluster_name", "label", "top_nouns", "top_captions"} <= set(rows.columns)

    click_text(browser, "button", "Browse them on Correspondences")
    check(browser, "Correspondences", "correspondences-from-selection")
    assert f"The {len(chosen)} images selected in Image embeddings" in browser.page_source
    assert "Why is this image here?" in browser.page_source


@needs_real_demo
def test_a_search_link_shows_both_rankings(server, browser):
    url, _ = server
    browser.get(f"{url}/Search?q=airliner")  # a new session: the link opens the default demo
    check(browser, "Search", "search-airliner")
    source = browser.page_source
    assert "the noun bank's row for “airliner”" in source
    assert "Nearest by cosine" in source and "Linked by the transport plan" in source
    assert source.count("airplane") >= 10  # the images found are real airplanes (their class in the captions)
