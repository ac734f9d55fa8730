"""Runs in the app (AppTest): a run made in a session is recorded and listed by the command line in
another process; a run made by ``cluster`` opens from ``?run=ID`` in a fresh session, identical; the Runs
page lists, filters, opens, compares and deletes runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cae_core.method import available_methods
from cae_core import load_bundle, planted_bundle, run_method, save_bundle
from cae_core.runs import RunStore
from test_app import assert_clean
from explorer.state import WORKSPACE_KEY
from test_runs import assert_same_run, recorded_ids

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
RUNS_PAGE = "pages/8_Runs.py"
TIMEOUT = 300


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A data folder with one small demo, ``tiny`` (planted embeddings, 4 classes)."""
    folder = tmp_path_factory.mktemp("data")
    bundle = planted_bundle(n_images=80, n_classes=4, dim=24, n_nouns=40, n_captions=40, seed=5)
    save_bundle(bundle, folder / "embeddings" / "tiny" / "tiny.npz")
    return folder


@pytest.fixture(autouse=True)
def private_dirs(data_dir, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CAE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CAE_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


def fresh_session(page: str | None = None, **query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    if page is not None:
        at.switch_page(page)
    return at.run()


def cae(*args: str) -> subprocess.CompletedProcess:
    completed = subprocess.run([sys.executable, "-m", "cae_core", *args], capture_output=True, text=True,
                               timeout=300, cwd=REPO)
    assert completed.returncode == 0, completed.stderr
    return completed


def test_a_run_made_in_the_app_is_listed_by_the_command_line_and_reopens(data_dir):
    at = fresh_session(demo="tiny")
    assert_clean(at)
    made = at.session_state[WORKSPACE_KEY]
    assert len(made.run_ids) == len(available_methods(made.bundle)) and made.run_ids["cae"]
    # another process, as after a server restart
    listed = cae("runs", "--source", "app", "--dataset", "tiny").stdout
    assert all(run_id in listed for run_id in made.run_ids.values())
    at.switch_page("pages/4_Embedding_map.py").run()  # the maps it fits join the run's record
    assert_clean(at)
    maps = RunStore().get(made.run_ids["cae"]).maps()
    assert {"umap_image", "umap_noun", "umap_caption", "umap_fused"} <= set(maps)
    assert np.isfinite(maps["umap_fused"]).all(axis=1).sum() == 80

    opened = fresh_session("pages/3_Correspondences.py", run=made.run_ids["cae"])
    assert_clean(opened)
    ws = opened.session_state[WORKSPACE_KEY]
    assert ws.opened_run == made.run_ids["cae"] and set(ws.results) == set(made.results)
    for method, result in made.results.items():
        assert_same_run(ws.results[method], result)
    assert any(made.run_ids["cae"] in caption.value for caption in opened.caption)


def test_a_run_made_with_cluster_opens_from_a_link_on_every_page(data_dir, tmp_path):
    bundle_file = data_dir / "embeddings" / "tiny" / "tiny.npz"
    completed = cae("cluster", "--features", str(bundle_file), "--clusters", "4", "--out", str(tmp_path / "out"),
                    "--quiet", "--gamma", "0.02")
    run_id = recorded_ids(completed.stderr)["cae"]
    again = None
    for page in ("pages/3_Correspondences.py", "pages/5_Clusters.py", "pages/7_Search.py", None):
        at = fresh_session(page, run=run_id)
        assert_clean(at)
        ws = at.session_state[WORKSPACE_KEY]
        assert ws.opened_run == run_id and list(ws.results) == ["cae"] and ws.config.gamma == 0.02
        if again is None:  # the same request made here: its clusters, weights and correspondences
            again = run_method(load_bundle(bundle_file), "cae", 4, config=ws.config, seed=0)
        assert_same_run(ws.results["cae"], again)


def test_the_runs_page_filters_opens_compares_and_deletes(data_dir, tmp_path):
    bundle_file = data_dir / "embeddings" / "tiny" / "tiny.npz"
    ids = recorded_ids(cae("compare", "--features", str(bundle_file), "--clusters", "4", "--out",
                           str(tmp_path / "cmp"), "--quiet").stderr)
    at = fresh_session(RUNS_PAGE)
    assert_clean(at)
    assert set(at.dataframe[0].value["id"]) == set(ids.values())

    at.multiselect(key="runs-methods").set_value(["cae", "clip-kmeans"]).run()
    assert set(at.dataframe[0].value["method"]) == {"cae", "clip-kmeans"}
    at.text_input(key="runs-settings").set_value("epsilon=0.5").run()
    assert_clean(at)
    assert any("No recorded runs match" in info.value for info in at.info)
    at.text_input(key="runs-settings").set_value("epsilon=0.05").run()

    at.selectbox(key="runs-a").set_value(ids["cae"])
    at.selectbox(key="runs-b").set_value(ids["clip-kmeans"]).run()
    assert_clean(at)
    store = RunStore()
    a, b = store.get(ids["cae"]), store.get(ids["clip-kmeans"])
    from sklearn.metrics import adjusted_rand_score

    assert at.metric[0].value == f"{adjusted_rand_score(a.assignments, b.assignments):.3f}"
    contingency = [frame.value for frame in at.dataframe if frame.value.index.name == f"{a.id} (cae)"][0]
    assert int(contingency.to_numpy().sum()) == 80 and contingency.index[0].startswith("0 · ")
    metrics = [frame.value for frame in at.dataframe if "b - a" in frame.value.columns][0]
    assert np.isclose(metrics.set_index("metric").loc["acc", "a"], a.manifest["metrics"]["acc"])

    at.selectbox(key="runs-open").set_value(ids["clip-kmeans"])
    at.button(key="runs-open-button").click().run()
    assert_clean(at)
    ws = at.session_state[WORKSPACE_KEY]
    assert ws.opened_run == ids["clip-kmeans"] and len(ws.results) == len(available_methods(ws.bundle))  # the runs made with it
    assert at.query_params["run"] == ids["clip-kmeans"]

    at.multiselect(key="runs-delete").set_value([ids["clip-kmeans"]]).run()
    at.button(key="runs-delete-button").click().run()
    assert_clean(at)
    assert set(at.dataframe[0].value["id"]) == {ids["cae"]}
    assert ids["clip-kmeans"] not in set(RunStore().runs()["id"])
