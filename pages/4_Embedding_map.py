"""Step 4: UMAP maps of what each stage of CAE sees, linked by one selection, and one cross-modal map of
images and the texts transport matched them to."""

from __future__ import annotations

import functools
import html
import time

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from cae_core import Bank
from cae_core.analysis import representations
from explorer import views
from explorer.navigation import CORRESPONDENCES_PAGE
from explorer.widgets import BROWSE_KEY, MAP_SELECTION, SELECTION_MODE, image_grid_for, \
    page_header, require_run, user_errors

GALLERY_SIZE = 48
DRAWN_POINTS = 5000  # drawn per map unless "all points": WebGL copes with more, the page's payload less well
LINKS_PER_TEXT = 40
GALLERIES = 3  # texts whose linked images are shown as galleries under the cross-modal map
TITLES = views.REPRESENTATION_TITLES
LINKED, CROSS_MODAL = "Linked maps", "Cross-modal map"
TEXT_SYMBOLS = {"nouns": "x", "captions": "diamond"}
CHOSEN_TEXTS_KEY = "cross-modal-texts"

ws = page_header("Embedding map", "UMAP of what each stage of CAE sees. Box- or lasso-select images in any map "
                                  "(toolbar at the top right of a map): every map highlights them and the gallery "
                                  "below shows them.")
result = require_run(ws)
bundle = ws.bundle
available = list(representations(result, bundle))

view = st.segmented_control("View", [LINKED, CROSS_MODAL], default=LINKED, key="map-view") or LINKED
with st.expander("Map settings", expanded=True):
    first, second, third = st.columns(3)
    colour_choices = ["CAE cluster", "ground-truth class"] if bundle.has_labels else ["CAE cluster"]
    colour = second.radio("Colour by", colour_choices, horizontal=True)
    if view == LINKED:
        shown = first.multiselect("Representations", available, default=available, format_func=TITLES.get)
        with_texts = second.checkbox("Draw the selected texts in the same map", value=False,
                                     help="Fits UMAP jointly on images and texts. Fused features live in another "
                                          "space (the concatenation), so their map has no texts.")
    else:
        remove_gap = first.checkbox("Remove the modality gap (each modality's mean)", value=True,
                                    help="CLIP puts images and texts in two cones; with the raw vectors a joint map "
                                         "draws two islands and no text lands among its images.")
    sizes = sorted({size for size in (500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000) if size < bundle.n_images}
                   | {bundle.n_images})
    max_points = int(third.select_slider("Images fitted per map", sizes, value=min(bundle.n_images, 5000),
                                         disabled=len(sizes) == 1,
                                         help="UMAP is fitted once per setting and cached on disk (50,000 images: "
                                              "about a minute here)."))
    n_neighbors = int(third.slider("UMAP neighbours", 5, 50, 15))
    show_all = first.toggle("Draw all points", value=False,
                            help=f"Otherwise each map draws up to {DRAWN_POINTS:,} points, thinned where they are "
                                 "dense (sparse regions keep every point); the selection is always drawn.")

if bundle.n_images > max_points:
    st.info(f"Each map is fitted on a random subsample of {max_points:,} of the {bundle.n_images:,} images "
            f"(seed {ws.seed}, the same images in every map).", icon=":material/info:")


def _natural(value: str):
    """Cluster ids sort as numbers, class names as text."""
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def image_figure(images: pd.DataFrame) -> go.Figure:
    """The images of a map, coloured, in WebGL; the selection highlighted, the rest dimmed."""
    drawn = views.drawn_points(ws, images, None if show_all else DRAWN_POINTS)
    colour_column = "cluster" if colour == "CAE cluster" else "class"
    figure = px.scatter(drawn, x="x", y="y", color=colour_column, custom_data=["index"], render_mode="webgl",
                        hover_data={"index": True, "cluster": True, "class": bool(bundle.has_labels),
                                    "x": False, "y": False}, height=440,
                        category_orders={colour_column: sorted(drawn[colour_column].unique(), key=_natural)})
    selected = ws.selection is not None
    figure.update_traces(marker=dict(size=5, opacity=0.25 if selected else 0.8))
    if selected:
        chosen = drawn[drawn["index"].isin(ws.selection)]
        # ids: the highlighted images readable from the page (a browser test compares the maps)
        figure.add_trace(go.Scattergl(x=chosen["x"], y=chosen["y"], mode="markers", name="selection",
                                      customdata=chosen[["index"]].to_numpy(), ids=chosen["index"].astype(str),
                                      hoverinfo="skip",
                                      marker=dict(size=8, color="rgba(0,0,0,0)", line=dict(width=1.5, color="black"))))
    figure.update_layout(margin=dict(l=0, r=0, t=30, b=0), legend=dict(itemsizing="constant"), dragmode="lasso",
                         xaxis=dict(visible=False), yaxis=dict(visible=False))
    return figure


def add_texts(figure: go.Figure, texts: pd.DataFrame) -> None:
    for bank, symbol in TEXT_SYMBOLS.items():
        rows = texts[texts["bank"] == bank]
        if len(rows):
            # plotly renders a subset of HTML in hover labels: texts from corpora are escaped
            figure.add_trace(go.Scattergl(x=rows["x"], y=rows["y"], mode="markers", name=f"selected {bank}",
                                          customdata=[[f"{bank}:{row}"] for row in rows["row"]],
                                          marker=dict(symbol=symbol, size=7, color="black", opacity=0.7),
                                          hovertext=[html.escape(text) for text in rows["text"]], hoverinfo="text"))


def take_selection(key: str, source: str) -> None:
    """A chart's box or lasso (a callback, before the page reruns): its images become the selection, its
    texts (cross-modal map) the texts whose plan is drawn."""
    points = st.session_state[key]["selection"]["points"]
    picked = [point["customdata"][0] for point in points if point.get("customdata")]
    images = [p for p in picked if not isinstance(p, str)]
    texts = sorted({p for p in picked if isinstance(p, str)})
    if key == CROSS_MODAL and texts:
        st.session_state[CHOSEN_TEXTS_KEY] = texts
    if images or not texts:  # boxing only texts keeps the images selected before
        ws.select(np.array(images, dtype=np.int64), source)


def fit_maps(maps: dict[str, tuple[str, tuple]], fit) -> None:
    """Fit the maps (name -> (representation, settings)) the session lacks with ``fit(representation,
    *settings)``, saying how long each took (the first UMAP in a server also compiles numba's code)."""
    missing = {name: job for name, job in maps.items() if not views.map_fitted(ws, result, job[0], *job[1])}
    if not missing:
        return
    with st.status(f"Fitting {len(missing)} UMAP map(s) of up to {max_points:,} images (the first fit in a fresh "
                   "server also compiles UMAP: allow half a minute)", expanded=True) as status:
        for name, (representation, settings) in missing.items():
            started = time.perf_counter()
            fit(representation, *settings)
            st.write(f"{name}: {time.perf_counter() - started:.1f} s")
        status.update(label="Maps ready (kept for this session and cached on disk)", state="complete",
                      expanded=False)


with user_errors():
    if view == LINKED:
        settings = (with_texts, max_points, n_neighbors)
        fit_maps({TITLES[rep]: (rep, settings) for rep in shown},
                 lambda rep, *rest: views.embedding_map(ws, result, rep, *rest))
        columns = st.columns(2) if len(shown) > 1 else [st.container()]
        for position, rep in enumerate(shown):
            images, texts = views.embedding_map(ws, result, rep, with_texts, max_points, n_neighbors)
            figure = image_figure(images)
            add_texts(figure, texts)
            with columns[position % len(columns)]:
                st.markdown(f"**{TITLES[rep]}**")
                key = f"map-{rep}"
                st.plotly_chart(figure, key=key, on_select=functools.partial(take_selection, key, TITLES[rep]),
                                selection_mode=SELECTION_MODE)
    else:
        fit_maps({CROSS_MODAL: ("cross-modal", (remove_gap, max_points, n_neighbors))},
                 lambda _, *rest: views.cross_modal_map(ws, result, *rest))
        images, texts = views.cross_modal_map(ws, result, remove_gap, max_points, n_neighbors)
        st.markdown("**Images, selected nouns (×) and selected captions (◆) in one map.** Choose texts below, or "
                    "box them in the map, to draw the transport plan's links to their images (line opacity: the "
                    "share of the image's mass); box images to draw their heaviest texts.")
        labels = {f"{bank}:{row}": f"{text} ({bank})" for bank, row, text in
                  zip(texts["bank"], texts["row"], texts["text"])}
        valid = [key for key in st.session_state.get(CHOSEN_TEXTS_KEY, []) if key in labels]
        st.session_state[CHOSEN_TEXTS_KEY] = valid
        chosen = st.multiselect("Draw the plan for these texts (type to search)", list(labels), key=CHOSEN_TEXTS_KEY,
                                format_func=labels.get)
        figure = image_figure(images)
        add_texts(figure, texts)
        position = dict(zip(images["index"], zip(images["x"], images["y"])))
        text_position = {f"{bank}:{row}": (x, y) for bank, row, x, y in
                         zip(texts["bank"], texts["row"], texts["x"], texts["y"])}
        segments = []  # (x0, y0, x1, y1, mass)
        for key in chosen:
            bank, row = key.split(":")
            for image, mass in views.text_links(result, Bank(bank), int(row), LINKS_PER_TEXT).itertuples(index=False):
                if image in position:
                    segments.append((*text_position[key], *position[image], mass))
        picked_images = ws.selection if ws.selection is not None and ws.selection_source == CROSS_MODAL else []
        for image in list(picked_images)[:50]:
            if image in position:
                for bank, row, _, mass in views.image_links(result, int(image), 3).itertuples(index=False):
                    segments.append((*position[image], *text_position[f"{bank}:{row}"], mass))
        for x0, y0, x1, y1, mass in segments:
            figure.add_trace(go.Scattergl(x=[x0, x1], y=[y0, y1], mode="lines", hoverinfo="skip", showlegend=False,
                                          line=dict(color=f"rgba(178,34,34,{0.15 + 0.85 * min(1.0, mass):.2f})",
                                                    width=1.5)))
        st.plotly_chart(figure, key=CROSS_MODAL, on_select=functools.partial(take_selection, CROSS_MODAL, CROSS_MODAL),
                        selection_mode=SELECTION_MODE)
        if len(chosen) > GALLERIES:
            st.caption(f"Galleries for the first {GALLERIES} chosen texts; the map draws the links of all {len(chosen)}.")
        for key in chosen[:GALLERIES]:
            bank, row = key.split(":")
            links = views.text_links(result, Bank(bank), int(row), LINKS_PER_TEXT)
            st.markdown(f"**{html.escape(labels[key])}**: {len(links)} images send it part of their mass")
            if len(links):
                image_grid_for(ws, links["image"].to_numpy()[:16])
                st.caption("Heaviest first: " + ", ".join(f"#{image} {mass:.2f}"
                                                          for image, mass in links.itertuples(index=False)))

st.subheader("Selection")
if ws.selection is None:
    st.caption("Nothing selected: draw a box or a lasso around images in any map.")
else:
    chosen_images = ws.selection
    table = views.selection_table(ws, result, chosen_images)
    st.markdown(f"**{len(chosen_images):,} images selected** in {ws.selection_source}; every map highlights them"
                + (f"; the first {GALLERY_SIZE} are shown." if len(chosen_images) > GALLERY_SIZE else "."))
    actions = st.columns(3)
    actions[0].download_button("Download the selection (CSV)", table.to_csv(index=False).encode(),
                               file_name="selection.csv", mime="text/csv", key="selection-download")
    if actions[1].button("Browse them on Correspondences", key="selection-browse"):
        st.session_state[BROWSE_KEY] = MAP_SELECTION
        st.switch_page(CORRESPONDENCES_PAGE)
    if actions[2].button("Clear the selection", key="selection-clear"):
        ws.select(None)
        st.rerun()
    gallery, breakdown = st.columns([4, 1])
    with gallery:
        image_grid_for(ws, chosen_images[:GALLERY_SIZE])
    counts = table["cluster"].value_counts().rename_axis("cluster").reset_index(name="images")
    breakdown.dataframe(counts, hide_index=True)
