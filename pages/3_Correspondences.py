"""Step 3: why an image landed where it did — its OT-matched texts, softmax retrieval beside them, and
the weights its fusion gave the image, noun and caption views."""

from __future__ import annotations

import numpy as np
import plotly.express as px
import streamlit as st

from cae_core.analysis import TOP_NOUNS, images_matching_noun
from explorer import views
from explorer.widgets import BROWSE_KEY, MAP_SELECTION, escape_markdown, image_caption, image_grid, page_header, \
    require_run, thumbnail, user_errors

POSITION_KEY = "correspondences-position"

ws = page_header("Correspondences", "Every image is aligned with the selected texts by entropic optimal "
                                    "transport; its correspondence x_u (nouns) or x_v (captions) is the "
                                    "similarity-weighted mix of the texts it sends mass to.")
result = require_run(ws)
bundle = ws.bundle

# --- which images to browse -------------------------------------------------------------------------------
MODES = ["all images", "by cluster", "by class", "by noun"] + ([MAP_SELECTION] if ws.selection is not None else [])
if st.session_state.get(BROWSE_KEY) not in MODES:  # a map selection that was cleared since
    st.session_state[BROWSE_KEY] = MODES[0]
mode = st.radio("Browse", MODES, horizontal=True, key=BROWSE_KEY)
if mode == MAP_SELECTION:
    candidates = ws.selection
    st.caption(f"The {len(candidates):,} images selected in {escape_markdown(ws.selection_source)} on the Embedding "
               "map page.")
elif mode == "by cluster":
    cluster = st.selectbox("Cluster", range(result.n_clusters), format_func=lambda c: views.cluster_label(result, c))
    candidates = np.flatnonzero(result.assignments == cluster)
elif mode == "by class" and bundle.has_labels:
    classes = np.unique(bundle.labels[bundle.labels >= 0])
    label = st.selectbox("Class", classes, format_func=lambda c: bundle.label_name(int(c)))
    candidates = np.flatnonzero(bundle.labels == label)
elif mode == "by noun":
    nouns = sorted(set(result.semantic_space.nouns.texts.tolist()))
    noun = st.selectbox("Noun (type to search the selected nouns)", nouns)
    candidates = images_matching_noun(result, noun)
    st.caption(f"Images with “{escape_markdown(noun)}” among their {TOP_NOUNS} heaviest OT-matched nouns, "
               "heaviest match first.")
else:
    if mode == "by class":
        st.caption("These images have no ground-truth classes; showing all images.")
    candidates = np.arange(bundle.n_images)

if not len(candidates):
    st.info("No image matches this choice.")
    st.stop()


def step(delta: int) -> None:
    """Previous / next: move the position widget's value (callbacks run before the page, so this is allowed)."""
    st.session_state[POSITION_KEY] = int(np.clip(st.session_state.get(POSITION_KEY, 1) + delta, 1, len(candidates)))


# keep the position inside the current list when the list changes
st.session_state[POSITION_KEY] = int(np.clip(st.session_state.get(POSITION_KEY, 1), 1, len(candidates)))
back, position_column, forward, where = st.columns([1, 2, 1, 4], vertical_alignment="bottom")
back.button("◀ previous", on_click=step, args=(-1,), width="stretch")
position = position_column.number_input(f"Image (1–{len(candidates)})", 1, len(candidates), key=POSITION_KEY)
forward.button("next ▶", on_click=step, args=(1,), width="stretch")
image = int(candidates[position - 1])
where.caption(f"Image index {image} of {bundle.n_images:,}; file: {escape_markdown(bundle.image_ids[image])}")

# --- the image, its cluster and its fusion weights --------------------------------------------------------
with user_errors():
    picture, details = st.columns([1, 3])
    data = thumbnail(ws.image_path(image), 256)
    if data is None:
        picture.caption("no picture for this image")
    else:
        picture.image(data, width="stretch")
    picture.text(image_caption(ws, image))
    picture.text(views.cluster_label(result, int(result.assignments[image])))
    if result.fusion is not None:
        weights = views.fusion_weights(result, image)
        picture.markdown("**Fusion weights** (image / noun / caption)")
        figure = px.bar(weights, x="weight", y="modality", orientation="h", range_x=[0, 1], height=160,
                        text=weights["weight"].map("{:.2f}".format), color="modality")
        figure.update_layout(showlegend=False, margin=dict(l=0, r=0, t=0, b=0), yaxis_title=None)
        picture.plotly_chart(figure, key="fusion-weights", config={"displayModeBar": False})
        level, note = views.fusion_note(result, image)
        (picture.warning if level == "warning" else picture.caption)(note)
        picture.dataframe(weights.drop(columns="weight").round(4), hide_index=True)

    with details:
        for bank, part in result.aligned.items():
            alignment, selection = part.alignment, part.selection
            contrast = views.softmax_contrast(ws, result, bank)
            st.markdown(f"**{bank.capitalize()}**")
            ot_column, softmax_column = st.columns(2)
            column_config = {"mass": st.column_config.ProgressColumn("mass", format="%.3f", min_value=0.0,
                                                                      max_value=1.0),
                             "cosine": st.column_config.NumberColumn("cosine", format="%.3f")}
            ot_column.caption("Optimal transport (CAE): share of the image's mass")
            ot_column.dataframe(views.matches(alignment, selection, image), hide_index=True,
                                column_config=column_config)
            softmax_column.caption(f"Softmax retrieval at the same temperature (τ = ε = {result.config.epsilon:g}) "
                                   "for contrast")
            softmax_column.dataframe(views.matches(contrast, selection, image), hide_index=True,
                                     column_config=column_config)
        st.markdown("**How concentrated these rows are**")
        with user_errors():  # a run too large to recompute the plan still shows the rest of the page
            concentration = views.concentration_table(ws, result, image)
            st.dataframe(concentration, hide_index=True, column_config={
                name: st.column_config.NumberColumn(format="%.1f" if name == "effective texts" else "%.3f")
                for name in concentration.columns[3:]})
        st.caption("Effective texts = exp(entropy of the image's row): 1 when all its mass goes to one text, the "
                   "number in brackets when it is spread evenly over every selected text. A row that says what "
                   "the image shows puts most of its mass on a few texts: high top-1 and top-10 shares, few "
                   "effective texts.")
        if bundle.per_image_captions:
            st.markdown("**This image's own captions** (per-image captions, as SAC writes them)")
            own = views.own_captions(ws, result, image)
            if own.empty:
                st.caption("The caption file gave this image no caption.")
            else:
                st.dataframe(own, hide_index=True, column_config={"mass from this image": st.column_config.ProgressColumn(
                    "mass from this image", format="%.3f", min_value=0.0, max_value=1.0)})
        st.caption("Softmax lets every image pick its favourite texts independently, so a few texts take most "
                   "images; OT's column marginals make every selected text receive an equal share of all "
                   "images' mass, spreading the matches.")

# --- why is this image here? --------------------------------------------------------------------------------
st.subheader("Why is this image here?")
with user_errors():
    why = views.explanation(ws, result, image)
    reasons, neighbours = st.columns([2, 3])
    with reasons:
        st.markdown(f"**Its cluster**: {escape_markdown(views.cluster_label(result, why.cluster))}")
        if why.cluster_captions:
            st.caption("Named by the captions: " + escape_markdown(" · ".join(why.cluster_captions[:3])))
        if why.centre is not None:
            st.markdown(f"**Its semantic-space centre**: {why.centre} of {result.semantic_space.n_centres}, which "
                        "selected:")
            for bank, texts in why.centre_texts.items():
                st.caption(f"{bank}: " + (escape_markdown(" · ".join(texts)) if texts else "none"))
        for bank, mass in why.naming_mass.items():
            st.markdown(f"**{mass:.0%}** of its {bank[:-1]} mass goes to texts that name its cluster")
        st.caption("A cluster is named by the texts its members send the most transport mass to; an image whose "
                   "own mass goes elsewhere sits in the cluster for its image or fused features, not its words.")
    with neighbours:
        st.markdown("**Nearest images in each representation** (same cluster as this one: share)")
        shares = why.same_cluster_share(result.assignments)
        for name, (found, cosine) in why.neighbours.items():
            st.caption(f"{views.REPRESENTATION_TITLES[name]}: {shares[name]:.0%} in cluster {why.cluster}")
            image_grid([ws.image_path(int(i)) for i in found],
                       [f"#{i} · c{result.assignments[i]} · {c:.2f}" for i, c in zip(found, cosine)],
                       columns=len(found), size=96)
