"""Exports round-trip: what the Clusters page offers for download is what the CLI writes and reads."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.delta_generator import DeltaGenerator
from streamlit.testing.v1 import AppTest

from cae_core.inputs.bundle import load_bundle, save_bundle
from cae_core.cli import main as cli
from cae_core.analysis.export import write_run
from cae_core.analysis.export import run_files
from cae_core import METHODS, run_methods
from explorer.state import Workspace
from polysemy_data import crane_bundle

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "5_Clusters.py")
SEED = 3


@pytest.fixture()
def downloads(monkeypatch) -> dict[str, bytes]:
    """The bytes of every download button the page draws, by file name, as given to ``download_button``
    (Streamlit's documented element call: label, data, file_name); text is sent as UTF-8, as Streamlit does."""
    captured: dict[str, bytes] = {}
    original = DeltaGenerator.download_button

    def spy(self, label, data, file_name=None, *args, **kwargs):
        captured[file_name or label] = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        return original(self, label, data, file_name, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", spy)
    return captured


@pytest.fixture(scope="module")
def app_runs():
    bundle = crane_bundle()
    return bundle, run_methods(bundle, n_clusters=4, seed=SEED)


def test_app_downloads_are_the_cli_files(app_runs, downloads, tmp_path):
    bundle, results = app_runs
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["workspace"] = Workspace(bundle=bundle, n_clusters=4, seed=SEED, results=dict(results))
    at.run()
    at.button(key=next(b.key for b in at.button if b.label == "Prepare features.npz")).click().run()
    assert not at.exception
    assert {"cae-assignments.csv", "cae-clusters.json", "cae-metrics.json", "comparison.csv",
            "features.npz"} <= set(downloads)

    # the bundle from the app is a valid --features input, and the CLI's files match the app's
    features = tmp_path / "features.npz"
    features.write_bytes(downloads["features.npz"])
    assert load_bundle(features).n_images == bundle.n_images
    out = tmp_path / "cli"
    assert cli(["cluster", "--features", str(features), "--clusters", "4", "--seed", str(SEED),
                "--out", str(out), "--quiet"]) == 0
    assert (out / "assignments.csv").read_bytes() == downloads["cae-assignments.csv"]
    assert (out / "clusters.json").read_bytes() == downloads["cae-clusters.json"]
    app_metrics, cli_metrics = (json.loads(text) for text in (downloads["cae-metrics.json"],
                                                              (out / "metrics.json").read_bytes()))
    app_metrics.pop("seconds"), cli_metrics.pop("seconds")  # timings differ run to run
    assert app_metrics == cli_metrics
    comparison = pd.read_csv(io.BytesIO(downloads["comparison.csv"]))
    assert list(comparison["method"]) == [name for name, spec in METHODS.items() if not spec.needs_own_captions]


def test_write_run_matches_downloads_for_an_ablation(app_runs, tmp_path):
    bundle, results = app_runs
    written = {path.name: path.read_text(encoding="utf-8") for path in write_run(results["cae-softmax"], bundle,
                                                                                     tmp_path)}
    assert written == run_files(results["cae-softmax"], bundle)


def test_compare_writes_one_row_per_method(app_runs, tmp_path):
    bundle, _ = app_runs
    features = tmp_path / "features.npz"
    save_bundle(bundle, features)
    assert cli(["compare", "--features", str(features), "--clusters", "4", "--out", str(tmp_path), "--quiet"]) == 0
    table = pd.read_csv(tmp_path / "comparison.csv")
    plain = [name for name, spec in METHODS.items() if not spec.needs_own_captions]  # no per-image captions here
    assert list(table["method"]) == plain
    assert list(table.columns) == ["method", "acc", "nmi", "ari", "seconds"]
    assert table[["acc", "nmi", "ari"]].notna().all().all()
    markdown = (tmp_path / "comparison.md").read_text().splitlines()
    assert len(markdown) == 2 + len(plain)  # header, rule, one row per method
    assert all(any(f" {name} " in line for line in markdown) for name in plain)
