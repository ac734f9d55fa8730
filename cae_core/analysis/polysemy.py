"""Polysemy: the nouns a word names in the bank (one row per WordNet sense), the images OT matched to
it and the sense each matched, and each sense's gloss against the captions that mention the word."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ..arrays import unit_rows
from ..errors import CaeError
from ..inputs.bundle import FeaturesBundle
from ..method.alignment import Alignment
from ..method.methods import Transport
from ..method.run import ClusteringResult, ClusterTexts, align_bank, cluster_texts
from ..method.semantic_space import Bank

TOP_NOUNS = 3  # an image "matches" a word when the word is among its 3 heaviest OT-matched nouns


def normalise_word(word: str) -> str:
    """Lower case, spaces for underscores (WordNet lemmas keep underscores: "water_tank")."""
    return " ".join(word.replace("_", " ").lower().split())


def noun_rows(nouns: np.ndarray, word: str) -> np.ndarray:
    """Rows of a noun bank whose lemma is ``word`` (one per WordNet sense; the bank keeps duplicates)."""
    target = normalise_word(word)
    return np.flatnonzero([normalise_word(str(noun)) == target for noun in nouns])


def _word_in_top(result: ClusteringResult, word: str, top: int) -> np.ndarray:
    """(N, top) bool: whether each of an image's ``top`` heaviest matched nouns is ``word``."""
    part = result.aligned.get(Bank.NOUNS)
    if part is None:
        return np.zeros((len(result.assignments), 0), dtype=bool)
    alignment, selection = part.alignment, part.selection
    is_word = np.zeros(len(selection), dtype=bool)
    is_word[noun_rows(selection.texts, word)] = True
    return is_word[alignment.top_text[:, :top]]


def images_matching_noun(result: ClusteringResult, word: str, top: int = TOP_NOUNS) -> np.ndarray:
    """Images whose ``top`` heaviest OT-matched nouns include ``word``, heaviest match first.

    Empty when the run aligned no nouns or the semantic space did not select the word.
    """
    hits = _word_in_top(result, word, top)
    index = np.flatnonzero(hits.any(axis=1))
    if not len(index):
        return index
    mass = (result.noun_alignment.top_weight[index, :top] * hits[index]).sum(axis=1)
    return index[np.argsort(-mass, kind="stable")]


def matched_senses(result: ClusteringResult, bundle: FeaturesBundle, word: str, images: np.ndarray,
                   top: int = TOP_NOUNS) -> list[str]:
    """For each image, the WordNet synset of its heaviest matched ``word`` row ("" when unknown).

    The bank holds one row per (lemma, synset), so the row OT chose names a sense; when the rows
    of one lemma share an embedding, which of them wins says nothing about the sense.
    """
    if bundle.noun_synsets is None or not len(images):
        return [""] * len(images)
    hits = _word_in_top(result, word, top)[images]
    best = np.argmax(hits, axis=1)  # top matches are sorted by weight: the first hit is the heaviest
    rows = result.semantic_space.nouns.bank_index[result.noun_alignment.top_text[images, best]]
    return [str(bundle.noun_synsets[row]) for row in rows]


def group_texts(result: ClusteringResult, images: np.ndarray, groups: np.ndarray,
                n_texts: int = 5) -> list[ClusterTexts]:
    """The nouns and captions with the most transport mass from each group of ``images``.

    ``groups`` (len(images),) holds group ids 0..G-1; one ``ClusterTexts`` per group.
    """
    assignments = np.full(len(result.assignments), -1)
    assignments[images] = groups
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    return cluster_texts(assignments, n_groups, result.aligned, n_texts)


def captions_mentioning(captions: np.ndarray | list[str], word: str) -> np.ndarray:
    """Indices of captions that contain ``word`` (or its plural) as a whole word, case-insensitively."""
    words = normalise_word(word).split()
    if not words:
        return np.zeros(0, dtype=np.int64)
    pattern = re.compile(r"\b" + r"[\s_-]+".join(map(re.escape, words)) + r"(?:s|es)?\b", re.IGNORECASE)
    return np.array([i for i, caption in enumerate(captions) if pattern.search(str(caption))], dtype=np.int64)


def senses_distinguishable(bundle: FeaturesBundle, word: str, tolerance: float = 1e-4) -> bool:
    """Whether the bank's rows for ``word`` differ in embedding; a lemma encoded without its gloss
    gives every sense the same vector, so the row the noun pipeline matches names no particular sense."""
    embeddings = bundle.noun_embeddings[noun_rows(bundle.nouns, word)]
    if len(embeddings) < 2:
        return False
    return bool(np.max(1 - unit_rows(embeddings, np.float64) @ unit_rows(embeddings[0], np.float64)) > tolerance)


def gloss_prompts(word: str, glosses: Sequence[str]) -> list[str]:
    """The text encoded for each sense: ``"<word>: <gloss>"``, e.g. "crane: large long-necked wading bird…".

    The word comes first, so it survives when the tokenizer cuts a long gloss at its context length
    (77 tokens for CLIP; open_clip truncates and keeps the end-of-text token), and every sense shares
    it, so the senses differ by their gloss alone. No prompt template ("itap of a {}."): the captions
    they are compared with are encoded as plain sentences, and a gloss is one too. Underscores of
    WordNet lemmas become spaces, as in the noun bank.
    """
    lemma = " ".join(str(word).replace("_", " ").split())
    return [f"{lemma}: {' '.join(str(gloss).split())}" for gloss in glosses]


def encode_glosses(clip, word: str, glosses: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """(len(glosses), d) L2-normalised embeddings of ``gloss_prompts(word, glosses)`` with ``clip``
    (an ``encoders.ClipModel``: the one that encoded the captions they are compared with).

    Not cached on disk: a word has a handful of senses, encoded in milliseconds.
    """
    from ..inputs.encoders import encode_texts  # torch: imported only when glosses are encoded

    if not len(glosses):
        raise CaeError("no glosses to encode")
    return encode_texts(clip, gloss_prompts(word, glosses), batch_size=batch_size, cache=False, stage="glosses")


def sense_caption_similarity(gloss_embeddings: np.ndarray, caption_embeddings: np.ndarray,
                             captions: Sequence[str], senses: Sequence[str]) -> pd.DataFrame:
    """Cosine of each caption with each sense's gloss embedding, and the closest sense.

    ``gloss_embeddings`` (S, d): one row per sense (see ``encode_glosses``), named by ``senses``
    (e.g. synsets); ``caption_embeddings`` (C, d) and ``captions`` (C,): the captions, embedded by
    the same text tower. Columns: ``caption``, one per sense, then ``closest`` ("" on a tie).
    """
    glosses = np.atleast_2d(np.asarray(gloss_embeddings, dtype=np.float64))
    caption_embeddings = np.asarray(caption_embeddings, dtype=np.float64)
    names = [str(name) for name in senses]
    if len(names) != len(glosses):
        raise CaeError(f"{len(names)} sense names for {len(glosses)} gloss embeddings")
    if len(captions) and glosses.shape[1] != caption_embeddings.shape[1]:
        raise CaeError(f"the glosses' embeddings have dimension {glosses.shape[1]} but the captions' have "
                       f"{caption_embeddings.shape[1]}: they come from different models")
    # one column per distinct name, none shadowing the table's own columns
    names = [name if names.count(name) == 1 and name not in ("caption", "closest") else f"{name} ({k + 1})"
             for k, name in enumerate(names)]
    cosine = (unit_rows(caption_embeddings, np.float64) @ unit_rows(glosses, np.float64).T if len(captions)
              else np.zeros((0, len(names))))
    table = pd.DataFrame(cosine, columns=names)
    table.insert(0, "caption", [str(caption) for caption in captions])
    ranked = np.sort(cosine, axis=1)
    # senses as close as each other (glosses that embed alike) name none
    tied = ranked[:, -1] - ranked[:, -2] < 1e-6 if len(names) > 1 else np.zeros(len(cosine), dtype=bool)
    table["closest"] = ["" if tie else names[k] for k, tie in zip(cosine.argmax(axis=1), tied)]
    return table


@dataclass
class SenseRow:
    """One row of the noun bank for a word (one WordNet sense) and what the run did with it.

    ``selected``: the semantic space kept it, so ``images`` (heaviest first) are those the run's OT plan
    sends the most of their mass to it (``image_mass``: the share of each image's mass). Otherwise
    ``images`` come from a probe: the same OT (the run's epsilon) over the selected nouns plus this
    word's rows. ``nearest_captions`` are the caption-bank rows closest to the row, with their cosines.
    """

    bank_row: int
    synset: str
    gloss: str
    selected: bool
    nearest_captions: list[str]
    caption_cosine: list[float]
    images: np.ndarray
    image_mass: np.ndarray


def heaviest_images(alignment: Alignment, column: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` images that send text ``column`` the largest share of their mass (those sending none
    are left out), heaviest first, and those shares."""
    mass = np.where(alignment.top_text == column, alignment.top_weight, 0).sum(axis=1)
    order = np.argsort(-mass, kind="stable")[:n]
    order = order[mass[order] > 0]
    return order, mass[order]


def word_senses(result: ClusteringResult, bundle: FeaturesBundle, word: str, n_captions: int = 5,
                n_images: int = 8) -> list[SenseRow]:
    """Every noun-bank row of ``word``: its sense, nearest captions and the images OT sends to it.

    Empty when the bank has no row for the word or the run aligned no nouns.
    """
    rows = noun_rows(bundle.nouns, word)
    part = result.aligned.get(Bank.NOUNS)
    if not len(rows) or part is None:
        return []
    selection = part.selection
    position = {int(row): k for k, row in enumerate(selection.bank_index)}
    missing = [int(row) for row in rows if int(row) not in position]
    probe = None
    if missing:
        # the word's unselected rows added to the selected nouns, aligned as the run aligned them
        texts = np.concatenate([selection.embeddings, bundle.noun_embeddings[missing]])
        probe = align_bank(bundle.image_embeddings, texts, Transport(), result.config)
    found = []
    for row in map(int, rows):
        if row in position:
            images, mass = heaviest_images(part.alignment, position[row], n_images)
        else:
            images, mass = heaviest_images(probe, len(selection) + missing.index(row), n_images)
        cosine = bundle.caption_embeddings @ bundle.noun_embeddings[row]
        nearest = np.argsort(-cosine, kind="stable")[:n_captions]
        found.append(SenseRow(row, str(bundle.noun_synsets[row]) if bundle.noun_synsets is not None else "",
                              str(bundle.noun_glosses[row]) if bundle.noun_glosses is not None else "",
                              row in position, [str(bundle.captions[k]) for k in nearest],
                              [float(cosine[k]) for k in nearest], images, mass))
    return found


def sense_cosines(bundle: FeaturesBundle, word: str) -> pd.DataFrame:
    """Cosine between the embeddings of a word's noun-bank rows, labelled by synset (or row)."""
    rows = noun_rows(bundle.nouns, word)
    names = [str(bundle.noun_synsets[row]) if bundle.noun_synsets is not None else f"row {row}" for row in rows]
    embeddings = unit_rows(bundle.noun_embeddings[rows], np.float64)
    return pd.DataFrame(embeddings @ embeddings.T, index=names, columns=names)
