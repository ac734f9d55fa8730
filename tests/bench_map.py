"""Benchmark (not a test): a 50,000-image Embedding map in headless Chromium.

    python tests/bench_map.py            # 50,000 planted images, prints one JSON line
    python tests/bench_map.py --images 5000

1. A planted bundle of N images (20 classes, d = 512) is written as a demo into a temporary data folder.
2. The engine runs ``cae`` and fits the four UMAP maps of all N images into the cache the app will use:
   the projection cost, per map.
3. The app is served and the demo opened (every method runs: not timed). On the Embedding map page,
   all N images are fitted per map (``fit_in_app_s``: the page's UMAP fits, or cache reads where
   step 2's fits match). Then, timed from the click until the four maps are drawn: "Draw all points"
   on (``draw_all_s``, 4 x N points) and off again (``draw_thinned_s``, up to 5,000 per map, thinned
   by density); then a lasso in the first map until every map highlights it (``lasso_answer_s``).

Figures depend on the machine and on what else runs on it; the README gives the ones measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]  # cae_core; test_browser

N_CLASSES = 20
DRAWN_POINTS = 5000  # what the page draws per map without "Draw all points" (pages/4_Embedding_map.py)
MAPS = ("image", "noun", "caption", "fused")


def wait_for_maps(driver, n_maps: int, points_per_map: int | None, timeout: float = 600,
                  at_most: int | None = None) -> float:
    """Seconds until ``n_maps`` plotly maps are on the page, each drawing ``points_per_map`` image points
    (any number when None; at most ``at_most`` when given), and the script has stopped."""
    from test_browser import settle

    started = time.monotonic()
    count_js = """return Array.from(document.querySelectorAll('.js-plotly-plot')).map(g => (g._fullData || [])
        .filter(t => t.name !== 'selection' && t.mode !== 'lines').reduce((n, t) => n + (t._length || 0), 0))"""
    while time.monotonic() - started < timeout:
        settle(driver, "Embedding map", timeout)
        counts = driver.execute_script(count_js)
        if len(counts) == n_maps and all(counts) and \
                all(count == (points_per_map or count) and count <= (at_most or count) for count in counts):
            return time.monotonic() - started
        time.sleep(0.1)
    raise TimeoutError(f"the maps were not drawn within {timeout} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    args = parser.parse_args()

    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from cae_core import planted_bundle, run_method, save_bundle
    from cae_core.analysis import project, representations
    from test_browser import HIGHLIGHTED_JS, SCREENSHOTS, chromium, click_text, lasso_around_a_point, serve_app, \
        settle

    record = {"images": args.images, "machine": platform.machine(), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        name = f"planted-{args.images // 1000}k"
        bundle = planted_bundle(n_images=args.images, n_classes=N_CLASSES, dim=512, n_nouns=5000, n_captions=5000)
        bundle.metadata.update(model="planted (synthetic)", image_source=name)
        save_bundle(bundle, folder / "data" / "embeddings" / name / f"{name}.npz")
        os.environ["CAE_CACHE_DIR"] = str(folder / "cache")

        result = run_method(bundle, "cae", N_CLASSES)
        for representation, points in representations(result, bundle).items():
            # the same call the page makes (all images fitted, 15 neighbours, the session's seed 0): cached
            started = time.perf_counter()
            project(points, n_neighbors=15, seed=0, max_points=args.images)
            record[f"umap_{representation}_s"] = round(time.perf_counter() - started, 1)
            print(f"UMAP of {args.images:,} {representation} points: {record[f'umap_{representation}_s']} s",
                  file=sys.stderr)

        driver = chromium(folder / "profile")
        try:
            with serve_app(folder, env={"CAE_DATA_DIR": str(folder / "data")}) as url:
                driver.get(f"{url}/?demo={name}")
                settle(driver, "CAE Explorer", timeout=3600)  # every method runs on the demo: minutes
                links = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')
                next(a for a in links if a.get_attribute("href").rstrip("/").endswith("Embedding_map")).click()
                settle(driver, "Embedding map", timeout=3600)
                # fit all N images per map: the slider's last step; the page fits what the cache lacks
                slider = next(element for element in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSlider"]')
                              if "Images fitted per map" in element.text)
                slider.find_element(By.CSS_SELECTOR, 'input[type="range"]').send_keys(Keys.END)
                started = time.monotonic()
                while "random subsample" in driver.page_source:  # the note goes once every image is fitted
                    time.sleep(0.2)
                wait_for_maps(driver, len(MAPS), None, timeout=3600)
                record["fit_in_app_s"] = round(time.monotonic() - started, 1)
                toggle = '[data-testid="stCheckbox"] label'
                click_text(driver, toggle, "Draw all points")
                record["draw_all_s"] = round(wait_for_maps(driver, len(MAPS), args.images), 2)
                click_text(driver, toggle, "Draw all points")
                record["draw_thinned_s"] = round(wait_for_maps(driver, len(MAPS), None, at_most=DRAWN_POINTS), 2)

                started = time.monotonic()
                lasso_around_a_point(driver, chart_index=0)
                while True:
                    highlighted = driver.execute_script(HIGHLIGHTED_JS)
                    if all(highlighted) and len({len(ids) for ids in highlighted}) == 1:
                        break
                    if time.monotonic() - started > 600:
                        raise TimeoutError("the lasso was not answered within 600 s")
                    time.sleep(0.05)
                record["lasso_answer_s"] = round(time.monotonic() - started, 2)
                record["lasso_images"] = len(highlighted[0])
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(SCREENSHOTS / f"bench-map-{name}.png"))
        finally:
            driver.quit()
    record["drawn_points_all"] = args.images * len(MAPS)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
