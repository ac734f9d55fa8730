"""Search: type a phrase; the images nearest to it, and the images CAE's transport plan links to it."""

from __future__ import annotations

import streamlit as st

from cae_core import Bank
from cae_core.inputs import has_random_weights, model_name
from explorer import views
from explorer.widgets import escape_markdown, image_caption, image_grid, page_header, require_run, user_errors

N_RESULTS = 24
MAX_PHRASE = 300  # CLIP reads 77 tokens of it at most; a link's phrase beyond this is cut
MODEL, BANKS = "the bundle's CLIP text tower", "the bundle's own bank rows"

ws = page_header("Search", "Type a word or a phrase: images ranked by cosine to it, beside the images the "
                           "run's optimal-transport plan links to it when it joins the selected texts.",
                 deep_link=bool(st.query_params.get("q")))
result = require_run(ws)
bundle = ws.bundle

model = model_name(bundle.metadata)
weights = ("random weights" if has_random_weights(bundle.metadata)
           else bundle.metadata.get("pretrained") or "unknown weights")
phrase_column, bank_column, encoder_column = st.columns([3, 1, 2])
linked = st.query_params.get("q", "")
if len(linked) > MAX_PHRASE:
    st.warning(f"The link's phrase is {len(linked):,} characters long; only its first {MAX_PHRASE} are used.")
phrase = phrase_column.text_input("Phrase", value=linked[:MAX_PHRASE], max_chars=MAX_PHRASE,
                                  placeholder="e.g. crane, airliner", key="search-phrase")
bank = Bank(bank_column.radio("Compete with the selected", [bank.value for bank in result.aligned] or ["nouns"],
                              key="search-bank",
                              help="The plan's view adds the phrase to this bank's selected texts and aligns them "
                                   "as the run did: an image links to the phrase only if it outbids them."))
encoder = encoder_column.radio("Encode the phrase with", [BANKS, MODEL], index=1 if ws.encoded_here else 0,
                               key="search-encoder",
                               help=f"The text tower is {model} ({weights}); it must be loadable here (its weights "
                                    "on disk, or a hub that answers). Without it, the bank rows that spell the "
                                    "phrase stand in for it.")
if not phrase.strip():
    st.info("Type a phrase above. With the demos, try a noun of the bank: *crane*, *airliner*, *sorrel*.",
            icon=":material/search:")
    st.stop()
st.query_params["q"] = phrase  # the search is a link to share

with user_errors():
    with st.spinner("Encoding and aligning the phrase…"):
        query = views.text_query(ws, phrase, encoder == MODEL)
        found = views.text_search(ws, result, query, bank, N_RESULTS)
    (st.info if query.stand_ins else st.caption)(f"“{escape_markdown(query.phrase)}”: {escape_markdown(query.source)}.")
    if query.stand_ins:
        shown = ", ".join(f"“{escape_markdown(text)}”" for text in query.stand_ins[:5])
        st.caption(f"Standing in: {shown}" + (f" and {len(query.stand_ins) - 5} more" if len(query.stand_ins) > 5 else ""))
    by_cosine, by_plan = st.columns(2)
    with by_cosine:
        st.markdown(f"**Nearest by cosine** (the {len(found.ranked)} highest)")
        image_grid([ws.image_path(int(i)) for i in found.ranked],
                   [f"{image_caption(ws, int(i))} · {c:.3f}" for i, c in zip(found.ranked, found.cosine)],
                   columns=4, size=112)
    with by_plan:
        st.markdown(f"**Linked by the transport plan** ({len(found.plan_images)} images send it mass; share of "
                    f"each image's mass)")
        if not len(found.plan_images):
            st.caption("No image sends it mass among its top matches: the selected texts outbid it everywhere.")
        image_grid([ws.image_path(int(i)) for i in found.plan_images],
                   [f"{image_caption(ws, int(i))} · {m:.3f}" for i, m in zip(found.plan_images, found.plan_mass)],
                   columns=4, size=112)
    overlap = len(set(found.ranked.tolist()) & set(found.plan_images.tolist()))
    st.caption(f"{overlap} images are in both lists. Cosine ranks every image against the phrase alone; the plan "
               f"shares each image's mass among the phrase and the {found.bank} the semantic space selected, so an "
               "image goes to the phrase only where no selected text describes it better.")
