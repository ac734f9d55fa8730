"""Clusters: scores, confusion matrix, clusters named by their texts, method comparisons, downloads."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from cae_core import METHODS, analysis
from cae_core.method import IMAGE_BASELINE
from cae_core.method import CLUSTER_COUNT_CRITERIA, DEFAULT_RANGE, GRAPH_NEIGHBOURS, MAX_ROWS
from cae_core.analysis import comparison_table, run_files
from explorer import views
from explorer.widgets import MAIN_METHOD, escape_markdown, image_caption, image_grid, image_grid_for, page_header, \
    require_run, run_all, user_errors

GALLERY_SIZE = 32
CHANGED_EXAMPLES = 16

ws = page_header("Clusters", "How well each method clusters the loaded images, what each cluster is about "
                             "(its nouns and captions with the most transport mass), and what changes between methods.")
require_run(ws)
bundle = ws.bundle
method = st.selectbox("Method", list(ws.results), index=list(ws.results).index(MAIN_METHOD),
                      format_func=lambda name: f"{name}: {METHODS[name].description}")
result = ws.results[method]

# --- scores -------------------------------------------------------------------------------------
if result.metrics:
    for column, key in zip(st.columns(3), ("acc", "nmi", "ari")):
        column.metric(key.upper(), f"{100 * result.metrics[key]:.1f}%")
else:
    st.info("The images have no ground-truth labels, so there is no ACC, NMI or ARI; the clusters' texts "
            "below still say what each cluster holds.")

st.subheader("Methods on the same data")
comparison = comparison_table(ws.results)
st.dataframe(comparison.assign(description=[METHODS[name].description for name in comparison["method"]],
                                source=[METHODS[name].source for name in comparison["method"]]),
             hide_index=True, column_config={key: st.column_config.NumberColumn(format="percent")
                                                    for key in ("acc", "nmi", "ari")})
scores = analysis.metrics_long(ws.results)
if not scores.empty:
    st.plotly_chart(px.bar(scores, x="method", y="value", color="metric", barmode="group", range_y=(0, 1),
                           labels={"value": "score"}))

if bundle.has_labels:
    st.subheader("Confusion matrix")
    st.caption("Labelled images per class (rows) and cluster (columns); clusters are ordered by the class "
               "the Hungarian matching gives them, so a good clustering is heavy on the diagonal.")
    confusion = views.confusion(ws, method)
    figure = px.imshow(confusion, color_continuous_scale="Blues", aspect="auto",
                       labels={"x": "cluster", "y": "class", "color": "images"})
    st.plotly_chart(figure)

# --- without labels: quality per cluster, and how many clusters -----------------------------------
st.subheader("Cluster quality without labels")
st.caption("Per cluster, on the features this method clustered: the mean cosine **silhouette** (how much closer "
           "its members are to each other than to the next cluster, −1 to 1) and **cohesion** (mean cosine of the "
           f"members to their centroid). Above {MAX_ROWS:,} images the silhouette is computed on a seeded sample.")
quality = views.cluster_quality(ws, method)
st.dataframe(quality, hide_index=True, column_config={
    "silhouette": st.column_config.ProgressColumn("silhouette", format="%.3f", min_value=-1.0, max_value=1.0),
    "cohesion": st.column_config.NumberColumn("cohesion", format="%.3f")})

with st.expander("How many clusters? Estimate K from the fused features", expanded=not bundle.has_labels):
    st.caption("Training-free methods take K as given. This scores every K in a range on the features the method "
               f"clusters: **eigengap** (largest gap in the spectrum of a {GRAPH_NEIGHBOURS}-nearest-neighbour "
               "graph's Laplacian) or **silhouette** (of spherical k-means at each K). The semantic space is sized "
               "for the top of the range. `python -m cae_core cluster --clusters auto` does the same.")
    low_column, high_column, criterion_column, button_column = st.columns(4, vertical_alignment="bottom")
    top = max(DEFAULT_RANGE[0], min(DEFAULT_RANGE[1], bundle.n_images - 1))
    low = int(low_column.number_input("Smallest K", DEFAULT_RANGE[0], top, DEFAULT_RANGE[0], key="k-low"))
    high = int(high_column.number_input("Largest K", low, max(low, bundle.n_images - 1), max(low, top), key="k-high"))
    criterion = criterion_column.selectbox("Criterion", CLUSTER_COUNT_CRITERIA, key="k-criterion")
    key = (method, (low, high), criterion)
    if button_column.button("Estimate K", key="k-estimate") or views.cluster_count_known(ws, *key):
        with user_errors(), st.spinner("Scoring each K…"):
            estimate, n_centres = views.cluster_count(ws, *key)
            true_k = analysis.true_cluster_count(bundle)
            st.plotly_chart(analysis.cluster_count_figure(estimate, true_k), key="k-figure")
            verdict = f"Estimated **K = {estimate.best}** ({estimate.criterion}, {n_centres} semantic-space centres)"
            verdict += f"; the labels have {true_k} classes." if true_k is not None else "; the images have no labels."
            st.markdown(verdict)
            if estimate.best != result.n_clusters and st.button(f"Run every method with K = {estimate.best}",
                                                                 key="k-run"):
                ws.n_clusters = estimate.best
                run_all(ws)
                st.rerun()

# --- named clusters -----------------------------------------------------------------------------
st.subheader("Clusters named by their texts")
summary = views.cluster_summary(ws, method)
if not result.cluster_texts or not any(entry.nouns or entry.captions for entry in result.cluster_texts):
    st.caption(f"{method} aligns no texts, so its clusters have no names; pick a CAE variant to name them.")
st.dataframe(summary, hide_index=True)

names = {entry.cluster: ", ".join(entry.nouns[:3]) for entry in result.cluster_texts}
cluster = st.selectbox("Gallery of cluster", range(result.n_clusters),
                       format_func=lambda k: f"{k} · {names.get(k) or 'unnamed'} ({summary['size'][k]} images)")
entry = result.cluster_texts[cluster]
st.markdown(f"**Cluster {cluster}: {escape_markdown(', '.join(entry.nouns) or 'no nouns')}**")
if entry.captions:
    st.dataframe(pd.DataFrame({"captions with the most transport mass": entry.captions}), hide_index=True)
image_grid_for(ws, (result.assignments == cluster).nonzero()[0][:GALLERY_SIZE])

# --- two methods compared image by image --------------------------------------------------------
st.subheader("Images that change cluster between two methods")
if len(ws.results) < 2:
    st.caption("This run has one method: nothing to compare here (the Runs page compares stored runs).")
else:
    left, right = st.columns(2)
    method_a = left.selectbox("First method", list(ws.results), index=list(ws.results).index(MAIN_METHOD), key="change-a")
    others = [name for name in ws.results if name != method_a]
    method_b = right.selectbox("Second method", others,
                               index=others.index(IMAGE_BASELINE) if IMAGE_BASELINE in others else 0, key="change-b")
    result_a, result_b = ws.results[method_a], ws.results[method_b]
    changed = views.changed_images(ws, method_a, method_b)
    st.metric("Images in another cluster", f"{len(changed):,} of {bundle.n_images:,}",
              help="After matching the second method's cluster ids to the first's (Hungarian matching on the "
                   "images they share), so a mere renumbering changes nothing.")
    if len(changed):
        mapped = analysis.aligned_assignments(result_a.assignments, result_b.assignments)
        shown = changed[:CHANGED_EXAMPLES]
        image_grid([ws.image_path(int(i)) for i in shown],
                   [f"{image_caption(ws, int(i))} · {result_a.assignments[i]} → {mapped[i]}" for i in shown])
        st.caption(f"Examples: first method's cluster → second method's (in the first method's numbering; "
                   f"-1: a {method_b} cluster with no partner).")

# --- downloads ----------------------------------------------------------------------------------
st.subheader("Downloads")
st.caption("The files `python -m cae_core cluster` and `compare` write, for the method chosen at the top; "
           "the features bundle is what `--features` reads.")
columns = st.columns(5)
for column, (name, text) in zip(columns, run_files(result, bundle).items()):
    column.download_button(name, text, file_name=f"{method}-{name}",
                           mime="text/csv" if name.endswith(".csv") else "application/json", key=f"download-{name}")
columns[3].download_button("comparison.csv", comparison.to_csv(index=False),
                           file_name="comparison.csv", mime="text/csv", key="download-comparison")
prepared = views.bundle_download(ws)
if prepared is not None:
    columns[4].download_button("features.npz", prepared, file_name="features.npz",
                               mime="application/octet-stream", key="download-bundle")
elif columns[4].button("Prepare features.npz", help="Writes the bundle once; large with a full WordNet bank."):
    views.bundle_download(ws, prepare=True)
    st.rerun()
