"""Polysemy: a word's WordNet senses, the images the noun-only pipeline matches to it, and what captions add.

The page's word travels in the URL (``?word=crane``) so a demo can be linked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from cae_core import analysis
from cae_core.inputs import flickr8k_captions, flickr30k_captions, noun_senses
from explorer import views
from explorer.widgets import escape_markdown, image_caption, image_grid, image_grid_for, page_header, run_controls, \
    user_errors

PRESETS = ("crane", "tank", "spaniel")
WORD_KEY = "polysemy-word"
CORPORA = {"flickr8k": flickr8k_captions, "flickr30k": flickr30k_captions}
GROUP_IMAGES = 16
GROUPS_SHOWN = 8
MENTIONS_SHOWN = 200
SEPARATION_SAMPLE = 1000  # pairwise cosines are O(n²): the heaviest-matched images stand for the rest
MAX_WORD = 64  # longer than any WordNet lemma; a link's word beyond it is cut


@st.cache_data(show_spinner="Reading WordNet…")
def senses_table(word: str) -> pd.DataFrame:
    """WordNet 3.0's noun senses of ``word`` (cached: the first WordNet read takes seconds)."""
    return pd.DataFrame([{"synset": sense["synset"], "lemmas": ", ".join(sense["lemmas"]), "gloss": sense["gloss"]}
                         for sense in noun_senses(word)], columns=["synset", "lemmas", "gloss"])


@st.cache_data(show_spinner="Searching the captions…")
def corpus_mentions(corpus: str, word: str) -> tuple[int, list[str]]:
    """How many captions of ``corpus`` mention ``word``, and the first of them."""
    captions = CORPORA[corpus]().captions
    index = analysis.captions_mentioning(captions, word)
    return len(index), captions[index[:MENTIONS_SHOWN]].tolist()


def choose(word: str) -> None:
    st.session_state[WORD_KEY] = word


# arriving from a link that names a word (``?word=crane``) with nothing loaded opens the default demo
ws = page_header("Polysemy", "One noun, several meanings: WordNet's senses of a word, the images CAE's noun "
                             "alignment matches to it, and how captions tell the senses apart (CAE's Figure 2).",
                 deep_link=WORD_KEY not in st.session_state and bool(st.query_params.get("word")))

# the URL names the word on arrival; afterwards the box does, and the URL follows it
if WORD_KEY not in st.session_state:
    linked = st.query_params.get("word", PRESETS[0])
    if len(linked) > MAX_WORD:
        st.warning(f"The link's word is {len(linked):,} characters long; only its first {MAX_WORD} are used.")
    st.session_state[WORD_KEY] = linked[:MAX_WORD]
box, *buttons = st.columns([3] + [1] * len(PRESETS), vertical_alignment="bottom")
for column, preset in zip(buttons, PRESETS):
    column.button(preset, on_click=choose, args=(preset,), key=f"preset-{preset}", width="stretch")
word = box.text_input("Word (a WordNet noun)", key=WORD_KEY, max_chars=MAX_WORD).strip()
if st.query_params.get("word") != word:
    st.query_params["word"] = word
if not word:
    st.info("Type a noun, or pick one of the examples.")
    st.stop()
shown = escape_markdown(word)  # the word comes from the URL: shown literally, never as markdown or HTML

# --- WordNet ------------------------------------------------------------------------------------
st.subheader(f"WordNet senses of “{shown}”")
senses = pd.DataFrame(columns=["synset", "lemmas", "gloss"])  # stays empty if WordNet cannot be read
with user_errors():
    senses = senses_table(word)
    if senses.empty:
        st.info("WordNet 3.0 has no noun sense for this word.")
    else:
        st.dataframe(senses, hide_index=True)

bundle = ws.bundle
if bundle is None:
    st.subheader("Captions that mention the word")
    st.caption("No data is loaded, so there are no images to match; this is what a caption corpus says.")
    corpus = st.selectbox("Caption corpus", list(CORPORA))
    with user_errors():
        count, examples = corpus_mentions(corpus, word)
        st.markdown(f"{count:,} captions of {corpus} mention “{shown}”.")
        if examples:
            st.dataframe(pd.DataFrame({"caption": examples}), hide_index=True)
    st.stop()

# --- the word's rows in the noun bank -------------------------------------------------------------
if "cae" in ws.results:
    st.subheader(f"“{shown}” in this bundle's noun bank")
    rows = views.word_senses(ws, word)
    if not rows:
        st.info(f"The noun bank of {escape_markdown(ws.dataset_name or 'this bundle')} has no row for “{shown}”, "
                "so no image can be matched to it.")
    else:
        in_wordnet = len(senses) if not senses.empty else 0
        if len(rows) == 1:
            st.info(f"The bank holds one sense of “{shown}” only ({escape_markdown(rows[0].synset or 'no synset')})"
                    + (f"; WordNet lists {in_wordnet}, the others are not in this bank." if in_wordnet > 1 else ".")
                    + " Nouns alone cannot tell senses apart that the bank does not hold.")
        else:
            st.markdown(f"{len(rows)} rows, one per sense. Cosine between their embeddings (CLIP's text tower "
                        "puts the senses of one word close together; only the prompt differs):")
            st.dataframe(analysis.sense_cosines(bundle, word).round(3))
        for sense in rows:
            st.markdown(f"**{escape_markdown(sense.synset or f'row {sense.bank_row}')}** · "
                        f"{escape_markdown(sense.gloss or 'no gloss')}")
            texts_column, images_column = st.columns([2, 3])
            texts_column.dataframe(pd.DataFrame({"nearest caption-bank rows": sense.nearest_captions,
                                                 "cosine": sense.caption_cosine}).round(3), hide_index=True)
            if sense.selected:
                images_column.caption("In the semantic space: the images CAE's transport plan sends the most of "
                                      "their mass to this row (share of each image's mass).")
            else:
                images_column.caption("Not in the semantic space (no centre selected it). Probe: the same OT, "
                                      "with this word's rows added to the selected nouns, sends it these images.")
            with images_column:
                if len(sense.images):
                    image_grid([ws.image_path(int(i)) for i in sense.images],
                               [f"{image_caption(ws, int(i))} · {mass:.3f}" for i, mass in
                                zip(sense.images, sense.image_mass)], columns=8, size=96)
                else:
                    st.caption("No image sends it mass among its top matches.")

# --- images the noun pipeline matches to the word -----------------------------------------------
st.subheader("Images matched to the word by the nouns alone")
noun_run = ws.results.get("cae-no-captions") or ws.results.get("cae")
cae = ws.results.get("cae")
if noun_run is None or cae is None:
    st.info("Run CAE to see which images its noun alignment matches to the word.")
    run_controls(ws, "polysemy")
    noun_run, cae = ws.results.get("cae-no-captions") or ws.results.get("cae"), ws.results.get("cae")
images = np.zeros(0, dtype=np.int64)
if noun_run is not None and cae is not None:
    top = st.slider("An image matches when the word is among its heaviest matched nouns, top", 1,
                    noun_run.noun_alignment.top_text.shape[1], min(analysis.TOP_NOUNS,
                                                                   noun_run.noun_alignment.top_text.shape[1]))
    images = analysis.images_matching_noun(noun_run, word, top)
    if not len(images):
        st.info(f"No image of {escape_markdown(ws.dataset_name or 'the loaded data')} has “{shown}” among its "
                f"top {top} OT-matched nouns (the semantic space may not have selected it). The text side is below.")

if len(images):
    senses_matched = analysis.matched_senses(noun_run, bundle, word, images, top)
    classes = [bundle.label_name(int(label)) for label in bundle.labels[images]] if bundle.has_labels \
        else senses_matched
    group_names, groups = np.unique(classes, return_inverse=True)
    st.write(f"{len(images):,} images, by {'true class' if bundle.has_labels else 'matched sense'}:")
    st.dataframe(pd.crosstab(pd.Series(classes, name="class" if bundle.has_labels else "sense"),
                             pd.Series(senses_matched, name="noun row's synset")))
    if not views.senses_distinguishable(ws, word):
        st.caption("The bundle encodes the word's senses with one and the same vector (the lemma alone, as TAC "
                   "does), so the synset the noun pipeline picked is arbitrary: nouns cannot tell the senses apart.")

    named = analysis.group_texts(cae, images, groups)
    for g, name in enumerate(group_names[:GROUPS_SHOWN]):
        members = images[groups == g]
        st.markdown(f"**{escape_markdown(name)}** · {len(members)} images · nouns: "
                    f"{escape_markdown(', '.join(named[g].nouns))}")
        image_grid_for(ws, members[:GROUP_IMAGES])
        if named[g].captions:
            st.dataframe(pd.DataFrame({"captions OT matched to these images": named[g].captions}),
                         hide_index=True)

    if len(group_names) > 1:
        st.subheader("How each representation separates them")
        st.caption("Mean cosine of two matched images of the same group and of different groups; the fused "
                   "features separate the senses when the between-group similarity drops.")
        sample, sample_groups = images[:SEPARATION_SAMPLE], groups[:SEPARATION_SAMPLE]
        separation = analysis.separation(cae, bundle, sample, sample_groups)
        st.plotly_chart(px.bar(separation.melt("representation", ["within", "between"], "pairs", "cosine"),
                               x="representation", y="cosine", color="pairs", barmode="group"))
        st.dataframe(separation, hide_index=True)
        shared = pd.DataFrame([{"method": name, "pairs of different groups sharing a cluster":
                                analysis.shared_cluster_rate(run.assignments, sample, sample_groups)}
                               for name, run in ws.results.items()])
        st.dataframe(shared, hide_index=True,
                     column_config={shared.columns[1]: st.column_config.NumberColumn(format="percent")})

# --- Figure 2: any two images -------------------------------------------------------------------
if cae is not None:
    st.subheader("Two images compared (CAE's Figure 2)")
    if len(images) and len(np.unique(groups)) > 1:
        first, second = images[groups == 0][0], images[groups == 1][0]
    else:
        first, second = 0, min(1, bundle.n_images - 1)
    left, right = st.columns(2)
    i = left.number_input("First image", 0, bundle.n_images - 1, int(first), key="pair-first")
    j = right.number_input("Second image", 0, bundle.n_images - 1, int(second), key="pair-second")
    with left:
        image_grid_for(ws, [i], columns=2)
    with right:
        image_grid_for(ws, [j], columns=2)
    similarity = pd.DataFrame([{"representation": name, "cosine": value}
                               for name, value in analysis.pair_similarities(cae, bundle, i, j).items()])
    st.plotly_chart(px.bar(similarity, x="representation", y="cosine", range_y=(-1, 1)))
    st.dataframe(similarity, hide_index=True)

# --- the text side ------------------------------------------------------------------------------
st.subheader("Captions that mention the word")
# cached per word: a full caption bank is 155,000 regex searches and each widget change reruns the page
mentions = views.caption_mentions(ws, word)
st.markdown(f"{len(mentions):,} of the bundle's {len(bundle.captions):,} captions mention “{shown}”.")
if len(mentions):
    shown = mentions[:MENTIONS_SHOWN]
    closeness, note = None, ""
    if not senses.empty:
        with user_errors(), st.spinner("Encoding the glosses…"):
            closeness, note = views.gloss_closeness(ws, word, senses, shown)
    if closeness is None:
        if note:
            st.info(f"The senses cannot be compared with the captions: {note}. Only the captions are listed.")
        closeness = pd.DataFrame({"caption": bundle.captions[shown]})
    else:
        st.caption("Cosine of each caption with each sense's gloss, encoded as “"
                   f"{escape_markdown(analysis.gloss_prompts(word, ['…'])[0])}” by the bundle's text tower "
                   f"({escape_markdown(note)}); closest is blank on a tie.")
    st.dataframe(closeness, hide_index=True)
