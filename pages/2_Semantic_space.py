"""Step 2: the semantic space — k-means centres on the images and the texts each centre selects."""

from __future__ import annotations

import dataclasses
import time

import plotly.express as px
import streamlit as st

from cae_core import Bank
from cae_core.method import CENTRES_PER_IMAGE, CONCEPT_DEPTH, MIN_SUPPORT, NEAREST_NOUNS, \
    SMALL_SET_CENTRES_PER_CLUSTER, SPACE_CHOICES, TEXTS_PER_CENTRE

from explorer import views
from explorer.widgets import escape_markdown, image_grid, image_grid_for, page_header, require_bundle, run_all, \
    user_errors

PER_CENTRE_IMAGES = round(1 / CENTRES_PER_IMAGE)  # CAE's n = N/300

ws = page_header("Semantic space", "k-means on the image embeddings gives n centres "
                                   f"(CAE: n = N/{PER_CENTRE_IMAGES}); every "
                                   "noun and caption goes to the centre it is most confident about, and each "
                                   "centre keeps its top K. The union of the kept texts is the semantic space.")
bundle = require_bundle(ws)
run_centres, run_per_centre, run_space = views.space_settings(ws)

left, right, kind_column, note = st.columns([1, 1, 1, 2], vertical_alignment="bottom")
n_centres = int(left.number_input("Centres n", 1, bundle.n_images, run_centres,
                                  help=f"The default is N/{PER_CENTRE_IMAGES} (CAE), or "
                                       f"{SMALL_SET_CENTRES_PER_CLUSTER}K where "
                                       f"N/{PER_CENTRE_IMAGES} < K (TAC's code): "
                                       f"{run_centres} for these images."))
per_centre = int(right.number_input("Texts per centre (top K)", 1, 1000, run_per_centre,
                                    help=f"TAC's public code keeps {TEXTS_PER_CENTRE}; CAE says top-K without a value."))
space_kind = kind_column.selectbox("Space", SPACE_CHOICES, index=SPACE_CHOICES.index(run_space),
                                   help="tac: every noun may be selected (TAC, CAE). hierarchy: MCA's hierarchy-"
                                        "aware filter first removes too general nouns and nouns far from the "
                                        "images' concepts (needs WordNet synsets).")
if (n_centres, per_centre, space_kind) != (run_centres, run_per_centre, run_space) or "cae" not in ws.results:
    applied = note.button("Use these settings for the clustering run", type="primary",
                          help="Re-runs CAE and the baselines with this semantic space.")
    if applied:
        # a new config object: the current results keep the one they were made with
        ws.config = dataclasses.replace(ws.config, n_centres=n_centres, texts_per_centre=per_centre,
                                        space=space_kind)
        run_all(ws)
else:
    note.caption("These are the settings of the current clustering run.")

with user_errors():
    started = time.perf_counter()
    with st.spinner(f"Building the semantic space: k-means into {n_centres} centres, then selecting texts…"):
        space = views.semantic_space(ws, n_centres, per_centre, space_kind)
        distribution = views.text_distribution(ws, n_centres, per_centre, space_kind)
    elapsed = time.perf_counter() - started

    sizes = views.union_sizes(space)
    columns = st.columns(len(sizes) + 1)
    columns[0].metric("Centres", space.n_centres)
    for column, (name, value) in zip(columns[1:], sizes.items()):
        column.metric(name.capitalize(), f"{value:,}")
    st.caption(f"Union of the selected texts: {sum(len(selection) for selection in space.selections.values()):,} "
               f"(from banks of {len(bundle.nouns):,} nouns and {len(bundle.captions):,} captions). "
               f"Shown in {elapsed:.2f} s (built once per setting, then kept for this session).")

    st.subheader("How texts distribute over the centres")
    figure = px.bar(distribution, x="centre", y="texts", color="stage", barmode="group", facet_row="bank",
                    log_y=True, height=420,
                    labels={"texts": "texts (log)", "stage": ""})
    figure.update_yaxes(matches=None)
    st.plotly_chart(figure, key="distribution")
    st.caption("‘prefer the centre’: texts of the whole bank whose most confident centre this is; ‘selected’: "
               "those the top-K filter kept. A centre that attracts few texts keeps fewer than K.")

    st.subheader("Centres")
    table = views.centre_table(space)
    st.dataframe(table, hide_index=True)

    st.subheader("One centre")
    centre = st.selectbox("Centre", range(space.n_centres),
                          format_func=lambda c: f"centre {c} · {table.at[c, 'images']} images")
    nouns_column, captions_column = st.columns(2)
    for column, bank in zip((nouns_column, captions_column), Bank):
        if bank in space.selections:
            column.markdown(f"**{bank.capitalize()} selected by centre {centre}**")
            column.dataframe(views.centre_selection(space, bank, centre), hide_index=True,
                             column_config={"score": st.column_config.ProgressColumn(
                                 "score", format="%.3f", min_value=0.0, max_value=1.0)})
    st.markdown(f"**Images closest to centre {centre}**")
    if ws.image_root is None:
        st.caption("No image folder is known for these embeddings, so only indices can be shown.")
    image_grid_for(ws, views.centre_examples(bundle, space, centre))

    if space.hierarchy is not None:
        st.subheader("What the hierarchy removed (MCA)")
        removed = views.hierarchy_removed(bundle, space)
        concepts = ", ".join(f"{escape_markdown(name.split('.')[0])} ({share:.0%})"
                             for name, share in list(space.hierarchy.concepts.items())[:12])
        st.markdown(f"{len(removed):,} of {len(bundle.nouns):,} nouns were removed before selection. The images' "
                    f"concepts (WordNet ancestors, {CONCEPT_DEPTH} steps below *entity*, of each image's "
                    f"{NEAREST_NOUNS} nearest nouns, kept when at least {MIN_SUPPORT:.0%} of the images name them): "
                    f"{concepts}.")
        st.dataframe(removed["reason"].value_counts().rename_axis("reason").reset_index(name="nouns"),
                     hide_index=True)
        st.dataframe(removed, hide_index=True)

    st.subheader("Each image's nearest noun (MCA's Figure 1)")
    nearest = views.nearest_noun_figure(ws, space)
    judged = nearest["right"].dropna() if "right" in nearest else nearest.iloc[0:0]
    if len(judged):
        st.caption(f"Among the nouns this space may select; right when the noun is the image's class or a kind "
                   f"of it in WordNet. {judged.mean():.0%} of these {len(judged)} images are right.")
    else:
        st.caption("Without labels and WordNet synsets, right and wrong cannot be told; the nouns are shown.")
    marks = {True: "✓", False: "✗"}
    image_grid([ws.image_path(int(i)) for i in nearest["image"]],
               [f"{marks.get(row.get('right'), '')} {row['nearest noun']}" + (f" · {row['class']}" if row.get("class")
                                                                              else "")
                for row in nearest.to_dict("records")])
