"""CAE Explorer's front door: navigation over the pages in ``pages/`` (listed in ``explorer/navigation.py``)
and the home page (what CAE does, the steps, what this session has loaded). Run with ``streamlit run app.py``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cae_core.analysis import comparison_table
from cae_core.inputs import fetchable_demos, find_demos, model_name
from explorer.navigation import DATASET_PAGE, PAGES, navigation
from explorer.widgets import DEMO_LINK_KEY, escape_markdown, fetch_with_progress, open_demo, page_header, \
    run_controls


def home() -> None:
    ws = page_header("CAE Explorer", "Training-free image clustering with hierarchical semantic alignment "
                                     "(CAE, AAAI 2026), step by step on your own images.")

    st.markdown(
        "CAE clusters images without training. It embeds them with CLIP, builds a **semantic space** of the "
        "WordNet nouns and image captions that the images' k-means centres select, aligns every image with "
        "those texts by **entropic optimal transport** (Sinkhorn), which keeps every selected text in use "
        "instead of letting a few popular ones win, and clusters the image embedding **fused** with its noun and "
        "caption correspondences, each image weighing the three by how much they agree.")

    st.image("assets/pipeline.svg", caption="images → semantic space → optimal transport → fusion → k-means")

    st.subheader("Try a demo")
    st.caption("One click loads a demo and runs CAE with its baselines and ablations; the link "
               "`?demo=NAME` does the same, so a demo can be shared.")
    demos = find_demos()
    for demo in demos:
        left, right = st.columns([4, 1], vertical_alignment="center")
        kind = "synthetic: planted embeddings, the words mean nothing" if demo.synthetic else "real CLIP features"
        left.markdown(f"**{escape_markdown(demo.name)}** · {demo.n_images:,} images"
                      + (f" of {demo.n_classes} classes" if demo.n_classes else "")
                      + f" · {escape_markdown(demo.model)} · {demo.n_nouns:,} nouns, {demo.n_captions:,} captions · "
                      + ("pictures" if demo.has_pictures else "no pictures") + f" · *{kind}*")
        left.caption(escape_markdown(demo.description))
        if right.button("Open", key=f"demo-{demo.name}", type="primary" if not demo.synthetic else "secondary",
                        disabled=ws.demo == demo.name):
            st.session_state[DEMO_LINK_KEY] = demo.name
            st.query_params["demo"] = demo.name
            if open_demo(ws, demo.name):
                st.rerun()
    for source in fetchable_demos(demos):
        left, right = st.columns([4, 1], vertical_alignment="center")
        left.markdown(f"**{escape_markdown(source.name)}** · not on this machine: built from its public sources "
                      f"({source.size / 2**20:.1f} MiB to download, checked against recorded checksums)")
        left.caption(escape_markdown(source.description))
        if right.button("Fetch", key=f"fetch-{source.name}") and fetch_with_progress(source.name):
            st.rerun()

    st.subheader("The steps")
    for number, page in enumerate(PAGES, start=1):
        left, right = st.columns([1, 3])
        left.page_link(page.path, label=f"{number} · {page.title}")
        right.caption(page.what)

    st.subheader("Where you are")
    if ws.bundle is None:
        st.info("Nothing is loaded in this session yet. Start on the Dataset page: encode images with a pretrained "
                "CLIP model or a local checkpoint, load a features bundle (`.npz`), or explicitly choose random "
                "weights to explore the mechanics.", icon=":material/arrow_forward:")
        st.page_link(DATASET_PAGE, label="Go to the Dataset page", icon=":material/folder_open:")
    else:
        bundle = ws.bundle
        model = model_name(bundle.metadata)
        facts = {
            "data set": ws.dataset_name or "unnamed",
            "images": f"{bundle.n_images:,}",
            "classes": f"{len(bundle.class_names)}" if bundle.class_names is not None else "unlabelled",
            "embedding dimension": str(bundle.image_embeddings.shape[1]),
            "nouns in the bank": f"{len(bundle.nouns):,}",
            "captions in the bank": f"{len(bundle.captions):,}",
            "model": str(model) + (" (random weights)" if ws.random_weights else ""),
            "pictures from": str(ws.image_root) if ws.image_root else "no image folder (embeddings only)",
        }
        st.dataframe(pd.DataFrame({"": list(facts), "value": list(facts.values())}), hide_index=True)
        if ws.results:
            st.markdown(f"**Runs**: {len(ws.results)} methods, K = {ws.n_clusters}, seed {ws.seed}.")
            st.dataframe(comparison_table(ws.results), hide_index=True, column_config={
                key: st.column_config.NumberColumn(format="%.3f") for key in ("acc", "nmi", "ari")})
        else:
            st.markdown(f"Loaded **{escape_markdown(ws.dataset_name or 'a bundle')}**, not clustered yet.")
            run_controls(ws, "home")


navigation(home).run()
