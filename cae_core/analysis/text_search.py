"""Search the images with a phrase: ranked by cosine, and as the run's transport plan sees them.

A phrase becomes a vector in one of two ways. With the CLIP model that made the bundle, its text
tower encodes the phrase (``query_from_model``). A bundle of embeddings alone has no text tower, so
the bank rows that spell the phrase stand in (``query_from_banks``): the noun rows whose lemma is the
phrase, else the captions that mention it, averaged; the caller must say so to the user.

The plan's view (``search_images``) adds the query as one more text beside the run's selected texts
of a bank and aligns them as the run did (the same OT, the same epsilon): the images that send the
query most of their mass are those the plan would link to it, which differs from the cosine ranking
because the plan's column marginals share images out among competing texts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import unit_rows
from ..errors import CaeError
from ..inputs.bundle import FeaturesBundle
from ..method.methods import Transport
from ..method.run import ClusteringResult, align_bank
from ..method.semantic_space import Bank
from .polysemy import captions_mentioning, heaviest_images, normalise_word, noun_rows

MAX_STAND_INS = 200  # captions averaged for a phrase; more add nothing to the mean but time


@dataclass
class TextQuery:
    """``phrase`` as typed; ``embedding`` (d,) unit vector; ``source`` how it was made, for the user;
    ``stand_ins`` the bank texts averaged when no text tower was used (empty otherwise)."""

    phrase: str
    embedding: np.ndarray
    source: str
    stand_ins: list[str]


@dataclass
class SearchResult:
    """``ranked`` (n,) images by cosine to the query, best first, with ``cosine`` (n,); ``plan_images``
    (m,) the images that send the query the most transport mass, with ``plan_mass`` (m,) the share of
    each image's mass; ``bank`` the bank whose selected texts the query competed with."""

    query: TextQuery
    ranked: np.ndarray
    cosine: np.ndarray
    plan_images: np.ndarray
    plan_mass: np.ndarray
    bank: Bank


def _phrase(text: str) -> str:
    phrase = " ".join(str(text).split())
    if not phrase:
        raise CaeError("type a word or a phrase to search for")
    return phrase


def query_from_model(clip, phrase: str) -> TextQuery:
    """The phrase encoded by ``clip``'s text tower (``load_clip``'s model), as the captions were."""
    from ..inputs.encoders import encode_texts

    phrase = _phrase(phrase)
    embedding = encode_texts(clip, [phrase], batch_size=1)[0]
    return TextQuery(phrase, unit_rows(embedding), f"encoded by the text tower of {clip.model_name} ({clip.pretrained or 'random weights'})", [])


def query_from_banks(bundle: FeaturesBundle, phrase: str) -> TextQuery:
    """The mean of the bank rows that spell ``phrase``: noun rows with that lemma (every sense), else the
    captions that mention it (the first ``MAX_STAND_INS``). A clear error when no row does."""
    phrase = _phrase(phrase)
    rows = noun_rows(bundle.nouns, phrase)
    if len(rows):
        texts = [str(bundle.nouns[row]) for row in rows]
        senses = f" ({len(rows)} senses averaged)" if len(rows) > 1 else ""
        return TextQuery(phrase, unit_rows(bundle.noun_embeddings[rows].mean(axis=0)),
                         f"no text tower: the noun bank's row for “{normalise_word(phrase)}”{senses} stands in",
                         texts)
    mentions = captions_mentioning(bundle.captions, phrase)[:MAX_STAND_INS]
    if not len(mentions):
        known = [word for word in normalise_word(phrase).split() if len(noun_rows(bundle.nouns, word))]
        hint = f"the noun bank has {', '.join(known)}: search one of them" if known else "try a word from the banks"
        raise CaeError(f"no noun or caption of this bundle spells “{phrase}”, and without the CLIP model that "
                       f"made the bundle a phrase cannot be encoded; {hint}, or load the model")
    return TextQuery(phrase, unit_rows(bundle.caption_embeddings[mentions].mean(axis=0)),
                     f"no text tower: the mean of {len(mentions)} captions that mention it stands in",
                     [str(bundle.captions[k]) for k in mentions])


def search_images(result: ClusteringResult, bundle: FeaturesBundle, query: TextQuery, bank: Bank = Bank.NOUNS,
                  n: int = 24) -> SearchResult:
    """The ``n`` images nearest ``query`` by cosine, and the ``n`` the run's plan links to it when the
    query joins the run's selected texts of ``bank`` (the other bank when the run aligned only that one)."""
    if query.embedding.shape[-1] != bundle.image_embeddings.shape[1]:
        raise CaeError(f"the query has {query.embedding.shape[-1]} dimensions, the images "
                       f"{bundle.image_embeddings.shape[1]}: it was encoded by another model")
    if not result.aligned:
        raise CaeError(f"{result.method} aligns no texts: search with a run that does (cae)")
    if bank not in result.aligned:
        bank = next(iter(result.aligned))
    cosine = bundle.image_embeddings @ query.embedding
    ranked = np.argsort(-cosine, kind="stable")[:n]
    selection = result.aligned[bank].selection
    texts = np.concatenate([selection.embeddings, query.embedding[None, :].astype(selection.embeddings.dtype)])
    probe = align_bank(bundle.image_embeddings, texts, Transport(), result.config)
    plan_images, plan_mass = heaviest_images(probe, len(selection), n)
    return SearchResult(query, ranked, cosine[ranked], plan_images, plan_mass, bank)
