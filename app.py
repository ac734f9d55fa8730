"""CAE Explorer's front door: navigation over the steps in ``pages/`` and the home page (what CAE does,
the steps, what this session has loaded). Run with ``streamlit run app.py``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cae_core.analysis import comparison_table
from explorer.widgets import DATASET_PAGE, escape_markdown, page_header, run_controls

STEPS = (
    (DATASET_PAGE, "1 · Dataset", "choose images, a CLIP model and text banks; encode, or load a features bundle"),
    ("pages/2_Semantic_space.py", "2 · Semantic space", "the k-means centres and the nouns and captions each selects"),
    ("pages/3_Correspondences.py", "3 · Correspondences", "per image: OT-matched texts against softmax retrieval, "
                                                          "and its fusion weights"),
    ("pages/4_Embedding_map.py", "4 · Embedding map", "UMAP of image, noun, caption and fused embeddings; "
                                                      "lasso images into a gallery"),
    ("pages/5_Clusters.py", "5 · Clusters", "scores, clusters named by their texts, method comparison, downloads"),
    ("pages/6_Polysemy.py", "6 · Polysemy", "one word, several senses: how captions tell them apart"),
)


def home() -> None:
    ws = page_header("CAE Explorer", "Training-free image clustering with hierarchical semantic alignment "
                                     "(CAE, AAAI 2026), step by step on your own images.")

    st.markdown(
        "CAE clusters images without training. It embeds them with CLIP, builds a **semantic space** of the "
        "WordNet nouns and image captions that the images' k-means centres select, aligns every image with "
        "those texts by **entropic optimal transport** (Sinkhorn), which keeps every selected text in use "
        "instead of letting a few popular ones win, and clusters the image embedding **fused** with its noun and "
        "caption correspondences, each image weighing the three by how much they agree.")

    st.subheader("The steps")
    for page, label, what in STEPS:
        left, right = st.columns([1, 3])
        left.page_link(page, label=label)
        right.caption(what)

    st.subheader("Where you are")
    if ws.bundle is None:
        st.info("Nothing is loaded in this session yet. Start on the Dataset page: encode images with a pretrained "
                "CLIP model or a local checkpoint, load a features bundle (`.npz`), or explicitly choose random "
                "weights to explore the mechanics.", icon=":material/arrow_forward:")
        st.page_link(DATASET_PAGE, label="Go to the Dataset page", icon=":material/folder_open:")
    else:
        bundle = ws.bundle
        model = bundle.metadata.get("model") or bundle.metadata.get("model_name") or "unknown model"
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


# st.navigation over the pages/ files (rather than the bare folder convention) so the sidebar says "Home"
st.navigation([st.Page(home, title="Home", icon=":material/home:", default=True)]
              + [st.Page(page, title=label.split(" · ")[1]) for page, label, _ in STEPS]).run()
