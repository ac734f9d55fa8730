"""The explorer's side of the run store: the runs a session makes are recorded, and a stored run opens in
the session (from the Runs page or a ``?run=ID`` link) as it was made."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import streamlit as st

from cae_core import CaeError
from cae_core.runs import RunStore

from .state import Workspace


def record_runs(ws: Workspace) -> None:
    """Record the workspace's runs (made together, one batch). A store that cannot be written costs a
    warning, never the runs: they stay in the session."""
    try:
        ws.run_ids = RunStore().add_all(ws.results, ws.bundle, source="app", bundle_name=ws.dataset_name,
                                        bundle_path=ws.bundle_path, demo=ws.demo, image_root=ws.image_root,
                                        random_weights=ws.random_weights)
    except (CaeError, OSError, sqlite3.Error) as error:
        st.warning(f"These runs were not recorded in the run store ({error}); they stay in this session.",
                   icon=":material/history:")


def open_run(ws: Workspace, run_id: str) -> None:
    """Load the bundle a stored run was made on and the runs made with it (its batch: the app's methods, a
    ``compare``), each rebuilt from its record; every page then shows them."""
    store = RunStore()
    run = store.get(run_id)
    bundle = run.load_bundle()
    batch = run.manifest.get("batch")
    together = [store.get(found) for found in store.runs(batch=batch)["id"] if found != run.id] if batch else []
    fingerprint = run.manifest["bundle"]["fingerprint"]
    results, run_ids = {}, {}
    for other in [run] + together:
        if other.method not in results and other.manifest["bundle"]["fingerprint"] == fingerprint:
            results[other.method], run_ids[other.method] = other.result(bundle), other.id
    described = run.manifest["bundle"]
    ws.load(bundle, run.dataset, run.image_root(), bool(described.get("random_weights")),
            bundle_path=Path(described["path"]) if described.get("path") else None)
    ws.demo = described.get("demo")
    ws.n_clusters, ws.seed, ws.config = run.manifest["n_clusters"], run.manifest["seed"], results[run.method].config
    ws.set_results(results)
    ws.run_ids, ws.opened_run = run_ids, run.id


def keep_map(ws: Workspace, method: str, name: str, images: pd.DataFrame) -> None:
    """Add a map the session fitted (``images``: index, x, y) to the method's stored run, so exports carry
    it; a store that cannot be written leaves the map in the session only."""
    run_id = ws.run_ids.get(method)
    if run_id is None:
        return
    try:
        RunStore().add_map(run_id, name, images[["x", "y"]].to_numpy(), images["index"].to_numpy())
    except (CaeError, OSError, sqlite3.Error) as error:
        st.warning(f"This map was not added to run {run_id} ({error}).", icon=":material/history:")
