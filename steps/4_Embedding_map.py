"""Step 4: UMAP maps of the image embeddings, the noun and caption correspondences and the fused features;
box or lasso a region to see its images."""

from __future__ import annotations

import html
import time

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from cae_core.analysis import representations
from explorer import views
from explorer.widgets import image_grid_for, page_header, require_run, user_errors

GALLERY_SIZE = 48
TITLES = {"image": "Image embeddings", "noun": "Noun correspondences x_u", "caption": "Caption correspondences x_v",
          "fused": "Fused features"}

ws = page_header("Embedding map", "UMAP of what each stage of CAE sees. Box- or lasso-select points (toolbar "
                                  "at the top right of a map) to see those images below.")
result = require_run(ws)
bundle = ws.bundle
available = list(representations(result, bundle))

with st.expander("Map settings", expanded=True):
    first, second, third = st.columns(3)
    layout = first.radio("Layout", ["side by side", "one at a time"], horizontal=True)
    if layout == "one at a time":
        shown = [first.radio("Representation", available, format_func=TITLES.get, horizontal=True)]
    else:
        shown = first.multiselect("Representations", available, default=available, format_func=TITLES.get)
    colour_choices = ["CAE cluster", "ground-truth class"] if bundle.has_labels else ["CAE cluster"]
    colour = second.radio("Colour by", colour_choices, horizontal=True)
    with_texts = second.checkbox("Draw the selected texts in the same map", value=False,
                                 help="Fits UMAP jointly on images and texts. Fused features live in another "
                                      "space (the concatenation), so their map has no texts.")
    max_points = int(third.select_slider("Images per map", [500, 1000, 2000, 3000, 5000, 10000],
                                         value=2000 if bundle.n_images > 2000 else 500))
    n_neighbors = int(third.slider("UMAP neighbours", 5, 50, 15))

if bundle.n_images > max_points:
    st.info(f"Large set: each map shows a random subsample of {max_points:,} of the {bundle.n_images:,} images "
            f"(seed {ws.seed}, the same images in every map).", icon=":material/info:")


def figure_for(images: pd.DataFrame, texts: pd.DataFrame, representation: str) -> go.Figure:
    colour_column = "cluster" if colour == "CAE cluster" else "class"
    figure = px.scatter(images, x="x", y="y", color=colour_column, custom_data=["index"],
                        hover_data={"index": True, "cluster": True, "class": bool(bundle.has_labels),
                                    "x": False, "y": False},
                        height=440,
                        category_orders={colour_column: sorted(images[colour_column].unique(), key=_natural)})
    figure.update_traces(marker=dict(size=5, opacity=0.8))
    for bank, symbol in (("nouns", "x"), ("captions", "diamond")):
        rows = texts[texts["bank"] == bank]
        if len(rows):
            # plotly renders a subset of HTML in hover labels: texts from corpora are escaped
            figure.add_trace(go.Scatter(x=rows["x"], y=rows["y"], mode="markers", name=f"selected {bank}",
                                        marker=dict(symbol=symbol, size=7, color="black", opacity=0.7),
                                        hovertext=[html.escape(text) for text in rows["text"]],
                                        hoverinfo="text"))
    figure.update_layout(margin=dict(l=0, r=0, t=30, b=0), legend=dict(itemsizing="constant"),
                         dragmode="lasso", xaxis=dict(visible=False), yaxis=dict(visible=False))
    return figure


def _natural(value: str):
    """Cluster ids sort as numbers, class names as text."""
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


selected: set[int] = set()
with user_errors():
    maps = {}
    missing = [rep for rep in shown if ("map", result.method, rep, with_texts, max_points, n_neighbors)
               not in ws.derived]
    if missing:
        with st.status(f"Fitting {len(missing)} UMAP map(s) of up to {max_points:,} points "
                       "(the first fit in a fresh server also compiles UMAP: allow half a minute)",
                       expanded=True) as status:
            for rep in missing:
                started = time.perf_counter()
                views.embedding_map(ws, result, rep, with_texts, max_points, n_neighbors)
                st.write(f"{TITLES[rep]}: {time.perf_counter() - started:.1f} s")
            status.update(label="Maps ready (kept for this session and cached on disk)", state="complete",
                          expanded=False)
    columns = st.columns(2) if len(shown) > 1 else [st.container()]
    for position, rep in enumerate(shown):
        images, texts = views.embedding_map(ws, result, rep, with_texts, max_points, n_neighbors)
        with columns[position % len(columns)]:
            st.markdown(f"**{TITLES[rep]}**")
            event = st.plotly_chart(figure_for(images, texts, rep), key=f"map-{rep}", on_select="rerun",
                                    selection_mode=("box", "lasso"))
        selected.update(int(point["customdata"][0]) for point in event.selection.points
                        if point.get("customdata"))

st.subheader("Selection")
if not selected:
    st.caption("Nothing selected: draw a box or a lasso around points in any map.")
else:
    chosen = sorted(selected)
    counts = pd.Series(result.assignments[chosen]).value_counts().rename_axis("cluster").reset_index(name="images")
    st.markdown(f"**{len(chosen):,} images selected** across the maps"
                + (f"; the first {GALLERY_SIZE} are shown." if len(chosen) > GALLERY_SIZE else "."))
    gallery, breakdown = st.columns([4, 1])
    with gallery:
        image_grid_for(ws, chosen[:GALLERY_SIZE])
    breakdown.dataframe(counts, hide_index=True)
