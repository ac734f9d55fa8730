"""Tables and arrays the pages draw, computed from the engine's results and memoised in the workspace
(or, before anything is loaded, in the session).

No widgets here: the pages own the layout; this module shapes data (pandas tables, projections) so
that a rerun (a click, the next image) only slices what was computed once. Every memo key is here.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import streamlit as st

from cae_core import Alignment, Bank, CaeError, ClusteringResult, FeaturesBundle, SemanticSpace, TextSelection, \
    analysis, default_n_centres
from cae_core.analysis import bundle_bytes, heaviest_images, project, remove_modality_gap, representations, \
    thin_by_density
from cae_core.arrays import round_robin
from cae_core.inputs import ImageSource, estimate_presets, open_image_source
from cae_core.method import ClusterCountEstimate, align_bank, choose_n_clusters, semantic_space_for
from cae_core.method.methods import Softmax

from .resources import clip_model, text_tower
from .runs import keep_map
from .state import Workspace


# --- data sets -------------------------------------------------------------------------------------------

def class_counts(labels, class_names) -> pd.DataFrame:
    """(class, images) for labelled images, by class id."""
    labels = np.asarray(labels)
    counts = np.bincount(labels[labels >= 0], minlength=len(class_names) if class_names is not None else 0)
    names = [str(class_names[k]) if class_names is not None and k < len(class_names) else str(k)
             for k in range(len(counts))]
    return pd.DataFrame({"class": names, "images": counts})


def spread_sample(labels, n: int) -> np.ndarray:
    """Up to ``n`` image indices taking the classes in turn (the first image of each class, then the second…)."""
    return round_robin(labels, n)


def skipped_table(skipped) -> pd.DataFrame:
    """The files left out, with the reason, one row each."""
    return pd.DataFrame({"file": [item.image_id for item in skipped], "reason": [item.reason for item in skipped]})


# --- semantic space --------------------------------------------------------------------------------------

def space_settings(ws: Workspace) -> tuple[int, int, str]:
    """(centres, texts per centre, kind of space) the run uses, or would use, for the loaded bundle."""
    n_centres = ws.config.n_centres or default_n_centres(ws.bundle.n_images, ws.n_clusters, ws.config.train_size)
    return int(n_centres), int(ws.config.texts_per_centre), ws.config.space


def semantic_space(ws: Workspace, n_centres: int, per_centre: int, space: str) -> SemanticSpace:
    """The semantic space for these settings: the run's own when it used them, else built once and kept."""
    result = ws.results.get("cae")
    if result is not None and result.semantic_space is not None and (
            result.semantic_space.n_centres, result.config.texts_per_centre, result.config.space) == \
            (n_centres, per_centre, space):
        return result.semantic_space
    config = dataclasses.replace(ws.config, n_centres=n_centres, texts_per_centre=per_centre, space=space)
    return ws.memo(("space", n_centres, per_centre, space),
                   lambda: semantic_space_for(ws.bundle, tuple(Bank), n_centres, config, ws.seed))


def hierarchy_removed(bundle: FeaturesBundle, space: SemanticSpace) -> pd.DataFrame:
    """The nouns MCA's hierarchy filter removed, with the reason, and how many of each reason."""
    removed = ~space.hierarchy.keep
    return pd.DataFrame({"noun": bundle.nouns[removed].astype(str),
                         "synset": bundle.noun_synsets[removed].astype(str),
                         "reason": space.hierarchy.reason[removed]})


def nearest_noun_figure(ws: Workspace, space: SemanticSpace, n: int = 24) -> pd.DataFrame:
    """MCA's Figure 1 for the loaded bundle: ``n`` images spread over the classes and each one's nearest
    noun (among the nouns the space may select), right or wrong."""
    keep = space.hierarchy.keep if space.hierarchy is not None else None
    key = ("nearest-nouns", n, keep is not None)
    labels = ws.bundle.labels if ws.bundle.labels is not None else [-1] * ws.bundle.n_images
    return ws.memo(key, lambda: analysis.nearest_nouns(ws.bundle, spread_sample(labels, n), keep))


def _texts_of_centre(selection: TextSelection, centre: int, n: int | None = None) -> list[str]:
    rows = np.flatnonzero(selection.centre == centre)[:n]  # selections are grouped by centre, best first
    return [str(text) for text in selection.texts[rows]]


def centre_table(space: SemanticSpace) -> pd.DataFrame:
    """One row per centre: images, how many nouns and captions it selected, its best three of each."""
    sizes = np.bincount(space.centre_of_image, minlength=space.n_centres)
    rows = []
    for centre in range(space.n_centres):
        row = {"centre": centre, "images": int(sizes[centre])}
        for bank, selection in space.selections.items():
            row[f"{bank} selected"] = int(np.sum(selection.centre == centre))
            row[f"top {bank}"] = " · ".join(_texts_of_centre(selection, centre, 3))
        rows.append(row)
    return pd.DataFrame(rows)


def centre_selection(space: SemanticSpace, bank: Bank, centre: int) -> pd.DataFrame:
    """The texts of one bank that ``centre`` selected, with their confidence, best first."""
    selection = space.selections[bank]
    rows = np.flatnonzero(selection.centre == centre)
    return pd.DataFrame({"text": selection.texts[rows].astype(str), "score": selection.score[rows].astype(float),
                         "bank row": selection.bank_index[rows]})


def union_sizes(space: SemanticSpace) -> dict[str, int]:
    """Selected texts per bank and distinct strings among them (WordNet keeps one row per sense)."""
    sizes = {}
    for bank, selection in space.selections.items():
        sizes[bank.value] = len(selection)
        sizes[f"distinct {bank}"] = len(set(selection.texts.tolist()))
    return sizes


def text_distribution(ws: Workspace, n_centres: int, per_centre: int, space_kind: str) -> pd.DataFrame:
    """Long table (centre, bank, stage, texts): how many texts of each bank prefer each centre, and how
    many of those the top-K filter kept (both read from the engine's selection)."""
    space = semantic_space(ws, n_centres, per_centre, space_kind)

    def compute() -> pd.DataFrame:
        frames = []
        for bank, selection in space.selections.items():
            for stage, centres in (("prefer the centre", selection.bank_centre), ("selected", selection.centre)):
                counts = np.bincount(centres[centres >= 0], minlength=space.n_centres)  # -1: filtered out
                frames.append(pd.DataFrame({"centre": np.arange(space.n_centres), "bank": bank.value,
                                            "stage": stage, "texts": counts}))
        return pd.concat(frames, ignore_index=True)

    return ws.memo(("distribution", n_centres, per_centre, space_kind), compute)


def centre_examples(bundle: FeaturesBundle, space: SemanticSpace, centre: int, n: int = 8) -> np.ndarray:
    """The ``n`` member images closest to ``centre``, closest first."""
    members = np.flatnonzero(space.centre_of_image == centre)
    similarity = bundle.image_embeddings[members] @ space.centres[centre]
    return members[np.argsort(-similarity, kind="stable")[:n]]


# --- correspondences -------------------------------------------------------------------------------------

def softmax_contrast(ws: Workspace, result: ClusteringResult, bank: Bank) -> Alignment:
    """Softmax retrieval over the same selected texts as the run's OT, as the ``cae-softmax`` ablation
    does it (OT's temperature, Theorem 1): what the column constraint changes."""
    selection = result.aligned[bank].selection
    return ws.memo(("softmax", result.method, bank),
                   lambda: align_bank(ws.bundle.image_embeddings, selection.embeddings, Softmax(), result.config))


def concentrations(ws: Workspace, result: ClusteringResult) -> dict[Bank, dict[str, analysis.RowConcentration]]:
    """Per bank, how concentrated every image's row is under the run's OT and under softmax retrieval at
    the same temperature (the contrast beside it)."""
    images, config = ws.bundle.image_embeddings, result.config

    def measure(texts: np.ndarray) -> dict[str, analysis.RowConcentration]:
        return {"OT": analysis.concentration(analysis.ot_rows(images, texts, config).blocks()),
                "softmax": analysis.row_concentration(images, texts, config.epsilon, device=config.device)}
    return ws.memo(("concentration", result.method),
                   lambda: {bank: measure(part.selection.embeddings) for bank, part in result.aligned.items()})


def concentration_table(ws: Workspace, result: ClusteringResult, image: int) -> pd.DataFrame:
    """For each bank and alignment: the image's top-1 share, top-10 share and effective number of texts,
    and the run's medians over the images."""
    rows = []
    for bank, measured in concentrations(ws, result).items():
        for kind, measure in measured.items():
            for of, values in (("this image", measure.of_image(image)), ("median over images", measure.median())):
                rows.append({"texts": f"{bank} ({measure.n_texts})", "alignment": kind, "of": of,
                             "top-1 share": values["top1_share"],
                             f"top-{measure.k} share": values[f"top{measure.k}_share"],
                             "effective texts": values["effective_texts"]})
    return pd.DataFrame(rows)


def matches(alignment: Alignment, selection: TextSelection, image: int, n: int = 5) -> pd.DataFrame:
    """An image's ``n`` heaviest matches: text, its share of the image's mass, cosine similarity."""
    top = alignment.top_text[image, :n]
    return pd.DataFrame({"text": selection.texts[top].astype(str),
                         "mass": alignment.top_weight[image, :n].astype(float),
                         "cosine": alignment.top_similarity[image, :n].astype(float)})


def fusion_weights(result: ClusteringResult, image: int) -> pd.DataFrame:
    """One image's fusion per modality: its weight, its neighbourhood agreement with the image view (what
    the default weighting uses), its cosine to the prototype (what the paper's uses) and that cosine's
    mean over the images (the modality gap's share)."""
    fusion = result.fusion
    return pd.DataFrame({"modality": list(fusion.modalities), "weight": fusion.weights[image].astype(float),
                         "agreement with the image": fusion.agreement[image].astype(float),
                         "cos to prototype": fusion.prototype_cosine[image].astype(float),
                         "mean cos to prototype": fusion.offset.astype(float)})


def fusion_note(result: ClusteringResult, image: int) -> tuple[str, str]:
    """(``"warning"`` or ``"info"``, a sentence) saying what decided this image's weights."""
    fusion = result.fusion
    spread = float(np.ptp(fusion.offset))
    own = float(np.ptp(fusion.deviation[image]))
    if fusion.weighting == "equal":
        return "info", "Equal weights: this method does not weigh the modalities per image."
    if fusion.weighting == "paper" and fusion.gap_dominated[image]:
        return "warning", (f"These weights are driven by the modality gap: the modalities' mean cosines to the "
                           f"prototype differ by {spread:.3f}, this image's own deviations by only {own:.3f}, "
                           f"and γ = {result.config.gamma:g} turns that constant into the weights (the paper's "
                           f"formula as written).")
    if fusion.weighting == "paper":
        return "info", "Weights from the cosines to the prototype (the paper's formula); here the image's own " \
                       "deviations outweigh the modality gap."
    k = result.config.neighbours
    shared = ", ".join(f"{name} {value:.2f}" for name, value in
                       zip(fusion.modalities[1:], fusion.agreement[image, 1:]))
    return "info", (f"Trust weights: the image counts 1, each text view by how many of this image's {k} nearest "
                    f"neighbours in that view are also its nearest images (0 = no more than chance, 1 = the "
                    f"same neighbours): {shared}. Where the texts know little about the images, their views "
                    f"agree with nothing and the fusion falls back towards the image alone.")


def cluster_label(result: ClusteringResult, cluster: int) -> str:
    """``cluster 3 · 412 images · dog, puppy, …`` from the run's cluster texts."""
    entry = result.cluster_texts[cluster]
    words = ", ".join(entry.nouns[:3])
    return f"cluster {cluster} · {entry.size} images" + (f" · {words}" if words else "")


REPRESENTATION_TITLES = {"image": "Image embeddings", "noun": "Noun correspondences x_u",
                         "caption": "Caption correspondences x_v", "fused": "Fused features"}


# --- embedding maps --------------------------------------------------------------------------------------

def map_texts(space: SemanticSpace, representation: str) -> list[tuple[Bank, TextSelection]]:
    """The selected texts that live in the same space as ``representation`` (none for fused features,
    whose dimension is that of the concatenation)."""
    banks = {"image": tuple(Bank), "noun": (Bank.NOUNS,), "caption": (Bank.CAPTIONS,)}.get(representation, ())
    return [(bank, space.selections[bank]) for bank in banks if bank in space.selections]


def _map_tables(ws: Workspace, result: ClusteringResult, points: np.ndarray,
                texts: list[tuple[Bank, TextSelection]], text_arrays: list[np.ndarray], max_points: int,
                n_neighbors: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    bundle = ws.bundle
    coordinates, index = project(points, *text_arrays, n_neighbors=n_neighbors, seed=ws.seed, max_points=max_points)
    labels = bundle.labels[index] if bundle.labels is not None else np.full(len(index), -1)
    images = pd.DataFrame({"index": index, "x": coordinates[0][:, 0], "y": coordinates[0][:, 1],
                           "cluster": result.assignments[index].astype(str),
                           "class": [bundle.label_name(int(label)) for label in labels]})
    text_rows = [pd.DataFrame({"text": selection.texts.astype(str), "bank": bank.value, "row": np.arange(len(selection)),
                               "x": xy[:, 0], "y": xy[:, 1]})
                 for (bank, selection), xy in zip(texts, coordinates[1:])]
    texts_table = pd.concat(text_rows, ignore_index=True) if text_rows else \
        pd.DataFrame(columns=["text", "bank", "row", "x", "y"])
    return images, texts_table


def map_fitted(ws: Workspace, result: ClusteringResult, representation: str, *settings) -> bool:
    """Whether ``embedding_map`` (``representation`` a name) or ``cross_modal_map`` (``"cross-modal"``) with
    these settings is in the session already, so the page can say which maps it is about to fit."""
    return ("map", result.method, representation, *settings) in ws.derived


def embedding_map(ws: Workspace, result: ClusteringResult, representation: str, with_texts: bool,
                  max_points: int, n_neighbors: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """UMAP of one representation: (images table: index, x, y, cluster, class; texts table: text, bank,
    row (in the bank's selection), x, y).

    Fitted jointly with the selected texts when ``with_texts``; memoised per setting in the session and
    cached on disk by the engine, so a second visit is instant.
    """
    def compute() -> tuple[pd.DataFrame, pd.DataFrame]:
        texts = map_texts(result.semantic_space, representation) if with_texts else []
        points = representations(result, ws.bundle)[representation]
        images, texts_table = _map_tables(ws, result, points, texts, [selection.embeddings for _, selection in texts],
                                          max_points, n_neighbors)
        keep_map(ws, result.method, f"umap_{representation}", images)  # the run's export then carries it
        return images, texts_table

    return ws.memo(("map", result.method, representation, with_texts, max_points, n_neighbors), compute)


def cross_modal_map(ws: Workspace, result: ClusteringResult, remove_gap: bool, max_points: int,
                    n_neighbors: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Images, the selected nouns and the selected captions in one UMAP (tables as ``embedding_map``),
    each modality's mean removed first when ``remove_gap`` (CLIP's modality gap would draw two islands)."""
    def compute() -> tuple[pd.DataFrame, pd.DataFrame]:
        texts = map_texts(result.semantic_space, "image")
        arrays = [ws.bundle.image_embeddings, *(selection.embeddings for _, selection in texts)]
        if remove_gap:
            arrays = remove_modality_gap(*arrays)
        return _map_tables(ws, result, arrays[0], texts, arrays[1:], max_points, n_neighbors)

    return ws.memo(("map", result.method, "cross-modal", remove_gap, max_points, n_neighbors), compute)


def drawn_points(ws: Workspace, images: pd.DataFrame, max_drawn: int | None) -> pd.DataFrame:
    """The rows of a map's image table to draw: thinned by density to ``max_drawn`` (None: all), the
    current selection always drawn."""
    if max_drawn is None or len(images) <= max_drawn:
        return images
    keep = np.zeros(len(images), dtype=bool)
    keep[thin_by_density(images[["x", "y"]].to_numpy(), max_drawn, ws.seed)] = True
    if ws.selection is not None:
        keep |= np.isin(images["index"].to_numpy(), ws.selection)
    return images[keep]


def text_links(result: ClusteringResult, bank: Bank, row: int, n: int = 40) -> pd.DataFrame:
    """The images the run's plan sends most of their mass to text ``row`` of ``bank``'s selection: image,
    mass (the share of that image's mass), heaviest first."""
    images, mass = heaviest_images(result.aligned[bank].alignment, row, n)
    return pd.DataFrame({"image": images, "mass": mass.astype(float)})


def image_links(result: ClusteringResult, image: int, n: int = 5) -> pd.DataFrame:
    """An image's heaviest matches in every bank: bank, row (in the selection), text, mass."""
    frames = [pd.DataFrame({"bank": bank.value, "row": part.alignment.top_text[image, :n],
                            "text": part.selection.texts[part.alignment.top_text[image, :n]].astype(str),
                            "mass": part.alignment.top_weight[image, :n].astype(float)})
              for bank, part in result.aligned.items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["bank", "row", "text", "mass"])


def selection_table(ws: Workspace, result: ClusteringResult, images: np.ndarray, n_texts: int = 3) -> pd.DataFrame:
    """One row per selected image, for the download: index, image_id, cluster, its name, label and the
    heaviest OT-matched nouns and captions (``;``-separated, heaviest first)."""
    bundle = ws.bundle
    images = np.asarray(images, dtype=np.int64)
    table = pd.DataFrame({"index": images, "image_id": bundle.image_ids[images].astype(str),
                          "cluster": result.assignments[images],
                          "cluster_name": [", ".join(result.cluster_texts[c].nouns[:3]) for c in result.assignments[images]],
                          "label": [bundle.label_name(int(bundle.labels[i])) if bundle.labels is not None else ""
                                    for i in images]})
    for bank, part in result.aligned.items():
        top = part.alignment.top_text[images, :n_texts]
        table[f"top_{bank.value}"] = ["; ".join(part.selection.texts[row].astype(str)) for row in top]
    return table


# --- clusters and comparisons ----------------------------------------------------------------------------

def confusion(ws: Workspace, method: str) -> pd.DataFrame:
    """Labelled images per (class, cluster) of one run, clusters in Hungarian-matched order."""
    return ws.memo(("clusters-confusion", method), lambda: analysis.confusion_table(ws.results[method], ws.bundle))


def cluster_summary(ws: Workspace, method: str) -> pd.DataFrame:
    """One row per cluster of one run: size, names, majority class and purity."""
    return ws.memo(("clusters-summary", method), lambda: analysis.cluster_summary(ws.results[method], ws.bundle))


def changed_images(ws: Workspace, method_a: str, method_b: str) -> np.ndarray:
    """Images whose cluster differs between two runs once their cluster ids are matched."""
    return ws.memo(("clusters-changed", method_a, method_b),
                   lambda: analysis.changed_images(ws.results[method_a], ws.results[method_b]))


def cluster_count_known(ws: Workspace, method: str, k_range: tuple[int, int], criterion: str) -> bool:
    """Whether ``cluster_count`` has these settings already (the page then shows them without a click)."""
    return ("cluster-count", method, k_range, criterion) in ws.derived


def cluster_count(ws: Workspace, method: str, k_range: tuple[int, int], criterion: str) -> tuple[ClusterCountEstimate, int]:
    """K estimated for ``method`` on the loaded bundle (and the semantic-space size used), once per setting."""
    return ws.memo(("cluster-count", method, k_range, criterion),
                   lambda: choose_n_clusters(ws.bundle, method, k_range, criterion=criterion, config=ws.config,
                                             seed=ws.seed))


def cluster_quality(ws: Workspace, method: str) -> pd.DataFrame:
    """Label-free quality per cluster of one run: size, cosine silhouette, cohesion."""
    result = ws.results[method]
    return ws.memo(("cluster-quality", method),
                   lambda: analysis.cluster_quality(result.features, result.assignments, seed=ws.seed))


def bundle_download(ws: Workspace, prepare: bool = False) -> bytes | None:
    """The loaded bundle as ``.npz`` bytes once prepared (``prepare=True`` writes it), else None."""
    key = ("clusters-bundle-bytes",)
    if prepare:
        ws.memo(key, lambda: bundle_bytes(ws.bundle))
    return ws.derived.get(key)


# --- search and explanations -----------------------------------------------------------------------------

def text_query(ws: Workspace, phrase: str, use_model: bool) -> analysis.TextQuery:
    """The phrase as a vector: the bundle's text tower when ``use_model`` (a clear error when it cannot be
    loaded), else the bank rows that spell it. Kept per phrase."""
    def compute() -> analysis.TextQuery:
        if not use_model:
            return analysis.query_from_banks(ws.bundle, phrase)
        clip, note = ws.memo(("text-tower",), lambda: text_tower(ws.bundle))
        if clip is None:
            raise CaeError(f"the bundle's CLIP model cannot encode the phrase ({note}); search with the bank rows")
        return analysis.query_from_model(clip, phrase)

    return ws.memo(("text-query", phrase, use_model), compute)


def text_search(ws: Workspace, result: ClusteringResult, query: analysis.TextQuery, bank: Bank,
                n: int) -> analysis.SearchResult:
    """Images by cosine to the query and those the run's plan links to it (an OT probe: once per query)."""
    return ws.memo(("text-search", result.method, query.phrase, query.source, bank, n),
                   lambda: analysis.search_images(result, ws.bundle, query, bank, n))


def explanation(ws: Workspace, result: ClusteringResult, image: int) -> analysis.ImageExplanation:
    return ws.memo(("explain", result.method, image), lambda: analysis.explain_image(result, ws.bundle, image))


# --- polysemy --------------------------------------------------------------------------------------------

def caption_mentions(ws: Workspace, word: str) -> np.ndarray:
    """Captions of the bundle that mention ``word`` (a full bank is 155,000 regex searches: once per word)."""
    return ws.memo(("polysemy-mentions", word), lambda: analysis.captions_mentioning(ws.bundle.captions, word))


def senses_distinguishable(ws: Workspace, word: str) -> bool:
    return ws.memo(("polysemy-distinct", word), lambda: analysis.senses_distinguishable(ws.bundle, word))


def gloss_closeness(ws: Workspace, word: str, senses: pd.DataFrame,
                    shown: np.ndarray) -> tuple[pd.DataFrame | None, str]:
    """Cosine of each shown caption with each sense's gloss and a note on the weights used, or None and
    why it cannot be made. The text tower is loaded once per bundle: a failed load (an offline tag, say)
    is not retried for every word."""
    def compute() -> tuple[pd.DataFrame | None, str]:
        clip, note = ws.memo(("text-tower",), lambda: text_tower(ws.bundle))
        if clip is None:
            return None, note
        try:
            glosses = analysis.encode_glosses(clip, word, senses["gloss"].tolist())
            table = analysis.sense_caption_similarity(glosses, ws.bundle.caption_embeddings[shown],
                                                       ws.bundle.captions[shown], senses["synset"].tolist())
        except CaeError as error:
            return None, str(error).rstrip(".")
        return table, note

    return ws.memo(("polysemy-closeness", word), compute)


def word_senses(ws: Workspace, word: str) -> list[analysis.SenseRow]:
    """The noun-bank rows of ``word`` with their nearest captions and the images OT sends them (CAE's run)."""
    return ws.memo(("polysemy-senses", word), lambda: analysis.word_senses(ws.results["cae"], ws.bundle, word))


# --- encoding (before anything is loaded: kept in the session, not the workspace) ---------------------------

PREVIEW_KEY = "dataset-preview"
ESTIMATES_KEY = "dataset-estimates"


def image_source_preview(spec: str, limit: int | None) -> ImageSource:
    """The listing of an image source; the last one is kept, since a zip or benchmark is unpacked once."""
    preview = st.session_state.get(PREVIEW_KEY)
    if preview is None or preview[0] != (spec, limit):
        st.session_state[PREVIEW_KEY] = ((spec, limit), open_image_source(spec, limit=limit))
    return st.session_state[PREVIEW_KEY][1]


def preset_estimates(spec: str, source: ImageSource, model: str, device: str) -> pd.DataFrame:
    """Each encoding preset's work and estimated minutes for ``source`` on ``device``, measured once per
    (source, model, device) with an untrained copy of ``model`` (speed does not depend on the weights)."""
    key = (spec, len(source.records), model, device)
    kept = st.session_state.setdefault(ESTIMATES_KEY, {})
    if key not in kept:
        clip = clip_model(model, None, device)
        kept[key] = pd.DataFrame([{"preset": found.preset, "images": found.n_images,
                                   "noun prompts": found.n_noun_prompts, "captions": found.n_captions,
                                   "estimated minutes": round(found.seconds / 60, 1), "device": clip.device.type}
                                  for found in estimate_presets(clip, source)])
    return kept[key]


def own_captions(ws: Workspace, result: ClusteringResult, image: int) -> pd.DataFrame:
    """SAC's per-image captions of ``image`` and the share of its transport mass each one received
    (0 when it is not among the image's top matches)."""
    rows = ws.bundle.captions_of(image)
    part = result.aligned.get(Bank.CAPTIONS)
    mass = np.zeros(len(rows))
    if part is not None and len(rows):
        position = {int(row): k for k, row in enumerate(part.selection.bank_index)}
        received = dict(zip(part.alignment.top_text[image].tolist(), part.alignment.top_weight[image].tolist()))
        mass = np.array([received.get(position.get(int(row), -1), 0.0) for row in rows])
    return pd.DataFrame({"caption": ws.bundle.captions[rows].astype(str), "mass from this image": mass})
