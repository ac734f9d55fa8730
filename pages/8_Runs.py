"""Runs: every recorded run (made here or on the command line), filtered and sorted; open one, compare two,
delete some."""

from __future__ import annotations

import json

import pandas as pd
import plotly.express as px
import streamlit as st

from cae_core import CaeError
from cae_core.runs import SETTINGS, SORTABLE, RunStore, compare_runs, parse_setting
from explorer.runs import open_run
from explorer.widgets import RUN_LINK_KEY, escape_markdown, page_header, user_errors

SHOWN_SETTINGS = ("epsilon", "gamma", "fusion", "combine", "space", "n_centres", "texts_per_centre")

ws = page_header("Runs", "Every clustering run recorded by this app and by `python -m cae_core cluster`, `compare` "
                         "and `sweep`: filter and sort them, open one (every page then shows it as it was made), "
                         "compare two, delete some.")
store = RunStore()

# --- filters --------------------------------------------------------------------------------------------
left, middle, right = st.columns(3)
datasets = left.multiselect("Data sets", store.values("dataset"), key="runs-datasets")
methods = middle.multiselect("Methods", store.values("method"), key="runs-methods")
sources = right.multiselect("Made by", store.values("source"), key="runs-sources")
left, middle, right = st.columns(3)
settings_text = left.text_input("Settings", key="runs-settings", placeholder="epsilon=0.05, fusion=paper",
                                help="Only runs with these settings: NAME=VALUE, comma-separated.")
sort = middle.selectbox("Sort by", SORTABLE + SETTINGS, key="runs-sort",
                        help="A column, or a setting (newest, best and slowest first; names in order).")
limit = int(right.number_input("Show at most", 1, 100_000, 500, step=100, key="runs-limit"))

listing = pd.DataFrame()
with user_errors():
    settings = dict(parse_setting(part) for part in settings_text.split(",") if part.strip())
    listing = store.runs(dataset=datasets, method=methods, settings=settings, sort=sort, limit=limit)
    if sources:
        listing = listing[listing["source"].isin(sources)]
for problem in store.problems:
    st.warning(problem, icon=":material/report:")

if listing.empty:
    st.info("No recorded runs match. Runs are recorded when you cluster (Dataset page, a demo) and by the "
            "command line's `cluster`, `compare` and `sweep`.", icon=":material/history:")
    st.stop()

shown = listing.drop(columns=["settings", "fingerprint"])
parsed = [json.loads(text) for text in listing["settings"]]
for name in SHOWN_SETTINGS:
    shown[name] = [str(values.get(name)) for values in parsed]
shown["created"] = shown["created"].str.slice(0, 19).str.replace("T", " ")
st.dataframe(shown, hide_index=True, column_config={key: st.column_config.NumberColumn(format="%.3f")
                                                   for key in ("acc", "nmi", "ari")})
st.caption(f"{len(listing)} run(s) · kept in `{store.root}`")
ids = list(listing["id"])
described = dict(zip(ids, (f"{row.id} · {row.method} · {row.dataset} · K = {row.n_clusters} · seed {row.seed}"
                           + (f" · ACC {row.acc:.3f}" if pd.notna(row.acc) else "")
                           for row in listing.itertuples())))

# --- open -----------------------------------------------------------------------------------------------
st.subheader("Open a run")
chosen = st.selectbox("Run", ids, format_func=described.get, key="runs-open")
if st.button("Open", type="primary", key="runs-open-button"):
    with user_errors():
        open_run(ws, chosen)
        st.session_state[RUN_LINK_KEY] = chosen  # the link below must not reopen it
        st.query_params["run"] = chosen
if ws.opened_run:
    st.success(f"Open: run `{ws.opened_run}` ({escape_markdown(ws.dataset_name)}, K = {ws.n_clusters}, seed "
               f"{ws.seed}, with {len(ws.results)} method(s) made together). Every page shows it; the link "
               f"`?run={ws.opened_run}` opens it in a new session.", icon=":material/history:")

# --- compare --------------------------------------------------------------------------------------------
st.subheader("Compare two runs")
left, right = st.columns(2)
first = left.selectbox("Run a", ids, format_func=described.get, key="runs-a")
second = right.selectbox("Run b", ids, index=min(1, len(ids) - 1), format_func=described.get, key="runs-b")
if first == second:
    st.caption("Choose two different runs.")
else:
    try:
        found = compare_runs(store.get(first), store.get(second))
    except CaeError as error:
        st.info(str(error), icon=":material/compare_arrows:")
    else:
        st.metric("ARI between their labelings", f"{found.ari:.3f}",
                  help="1: the same partition of the images, whatever the cluster numbers; 0: no more alike "
                       "than chance.")
        left, right = st.columns(2)
        left.dataframe(found.metrics, hide_index=True,
                       column_config={key: st.column_config.NumberColumn(format="%.3f") for key in ("a", "b", "b - a")})
        right.dataframe(found.settings, hide_index=True)
        st.caption("Images per pair of clusters: rows are run a's clusters, columns run b's, each named by its "
                   "heaviest nouns.")
        st.plotly_chart(px.imshow(found.contingency, color_continuous_scale="Blues", aspect="auto", text_auto=True,
                                  labels={"x": f"b: {found.b.method}", "y": f"a: {found.a.method}",
                                          "color": "images"}))
        st.dataframe(found.contingency)

# --- delete ---------------------------------------------------------------------------------------------
st.subheader("Delete runs")
doomed = st.multiselect("Runs to delete", ids, format_func=described.get, key="runs-delete")
if st.button(f"Delete {len(doomed)} run(s)", disabled=not doomed, key="runs-delete-button"):
    with user_errors():
        for run_id in doomed:
            store.delete(run_id)
        st.rerun()
