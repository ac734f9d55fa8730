"""The semantic space: the nouns and captions that the image clusters' centres select.

k-means on the image embeddings gives n centres (CAE states n = N/300). Two readings of "each centre
keeps its top-K texts" (``rule``):

- ``"confident"`` (the default): every text of a bank goes to the centre it is most confident about
  (softmax over centres) and each centre keeps its most confident texts (TAC's public
  filter_nouns.py: temperature 1, 5 per centre). CAE extends TAC's pipeline (TAC's first author is a
  CAE co-author), and this is the only version of the step whose code is public.
- ``"nearest"``: the CAE seed's literal wording, "for each center, select the top-K most similar
  nouns/captions and take the union". A text near several centres is kept once, so the union is
  smaller, and a generic text close to every centre can be chosen by all of them.

The union is the space.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import torch

from .clustering import nearest_centres, spherical_kmeans
from .hierarchy import HierarchyFilter
from ..arrays import CACHE_BLOCK_BYTES, rows_per_block
from ..device import as_tensor, resolve_device
from ..errors import CaeError

CENTRES_PER_IMAGE = 1 / 300  # stated by CAE: n = N / 300 centres
SMALL_SET_CENTRES_PER_CLUSTER = 3  # TAC's code: 3K centres for DTD and UCF-101, where N/300 < K
TEXTS_PER_CENTRE = 5  # TAC's public code (topK = 5); CAE says "top-K" without a value
SELECTION_TEMPERATURE = 1.0  # TAC's public code: softmax over centres of the raw cosine
SELECTION_RULES = ("confident", "nearest")


class Bank(StrEnum):
    """A text bank: WordNet nouns or captions. Its value names it in files and tables."""

    NOUNS = "nouns"
    CAPTIONS = "captions"

    @property
    def modality(self) -> str:
        """The singular name of its correspondence as a modality: ``"noun"`` or ``"caption"``."""
        return self.value[:-1]


@dataclass
class TextSelection:
    """Texts of one bank chosen by the centres, grouped by centre, most confident first.

    ``bank_index`` (S,) rows of the bank; ``centre`` (S,) the centre that chose each text;
    ``score`` (S,) its softmax confidence for that centre; ``texts`` (S,); ``embeddings`` (S, d).
    ``bank_centre`` and ``bank_score`` (M,) hold the same for every text of the bank, chosen or not
    (centre -1 for a text a filter removed before selection).
    """

    bank_index: np.ndarray
    centre: np.ndarray
    score: np.ndarray
    texts: np.ndarray
    embeddings: np.ndarray
    bank_centre: np.ndarray
    bank_score: np.ndarray

    def __len__(self) -> int:
        return len(self.bank_index)


@dataclass
class SemanticSpace:
    """``centres`` (n, d) unit vectors; ``centre_of_image`` (N,); ``selections`` the texts selected
    from each bank used; ``hierarchy`` what MCA's hierarchy filter removed from the nouns, when used."""

    centres: np.ndarray
    centre_of_image: np.ndarray
    selections: dict[Bank, TextSelection]
    hierarchy: HierarchyFilter | None = None

    @property
    def n_centres(self) -> int:
        return len(self.centres)

    @property
    def nouns(self) -> TextSelection | None:
        return self.selections.get(Bank.NOUNS)

    @property
    def captions(self) -> TextSelection | None:
        return self.selections.get(Bank.CAPTIONS)


def default_n_centres(n_images: int, n_clusters: int, train_size: int | None = None) -> int:
    """n = round(N_train / 300) centres, or 3K where that is fewer than K; never more than N.

    N/300 is stated by CAE; TAC's code takes N from the *training* split (``train_size``; the images
    being clustered when it is not given). Where N/300 < K, TAC uses 3K (DTD: 141, UCF-101: 303); this
    rule reproduces all eight of TAC's counts (CIFAR-10 167, STL-10 17, ImageNet-1K 4,271, ...).
    It is also the floor for small N: 200 images into 10 clusters get 30 centres, not 1.
    """
    n = round((train_size or n_images) * CENTRES_PER_IMAGE)
    if n < n_clusters:
        n = SMALL_SET_CENTRES_PER_CLUSTER * n_clusters
    return int(min(n_images, n))


def select_texts(centres: np.ndarray, text_embeddings: np.ndarray, texts: np.ndarray,
                 per_centre: int = TEXTS_PER_CENTRE, temperature: float = SELECTION_TEMPERATURE,
                 device: str | torch.device = "auto", block_rows: int = 65536,
                 keep: np.ndarray | None = None, rule: str = "confident") -> TextSelection:
    """Select ``per_centre`` texts for each centre by ``rule`` (module docstring); the union.

    ``centres`` (n, d) and ``text_embeddings`` (M, d) unit rows; the bank is streamed in blocks of
    ``block_rows`` texts (fewer where n is large: ``rows_per_block``), so beyond the (M,) results
    memory stays O(block * n) whatever M. ``keep`` (M,) bool: only these texts may be selected (the
    others get centre -1). ``bank_centre``/``bank_score``: each text's most confident centre and its
    softmax confidence under ``"confident"``, its most similar centre and cosine under ``"nearest"``.
    """
    if per_centre < 1:
        raise CaeError("texts per centre must be at least 1")
    if rule not in SELECTION_RULES:
        raise CaeError(f"unknown text selection {rule!r}; choose one of {', '.join(SELECTION_RULES)}")
    dev = resolve_device(device)
    centre_tensor = as_tensor(centres, dev)
    # cache-sized blocks: the softmax and maxima read the similarities straight after the product wrote them
    block_rows = rows_per_block(len(centres), block_rows, CACHE_BLOCK_BYTES)
    allowed = None if keep is None else torch.as_tensor(np.asarray(keep, dtype=bool), device=dev)
    # results written in place: small lasting allocations between the blocks' temporaries would
    # fragment the heap (at N = 100,000 that held 3.7 GiB more resident memory)
    best_centre = torch.empty(len(text_embeddings), dtype=torch.long)
    confidence = torch.empty(len(text_embeddings))
    # "nearest": each centre's running top texts, (n, per_centre) cosines and bank rows
    top_value = torch.full((len(centres), 0), -torch.inf, device=dev)
    top_index = torch.zeros((len(centres), 0), dtype=torch.long, device=dev)
    for start in range(0, len(text_embeddings), block_rows):
        similarity = as_tensor(text_embeddings[start:start + block_rows], dev) @ centre_tensor.T
        scores = torch.softmax(similarity / temperature, dim=1) if rule == "confident" else similarity
        value, index = scores.max(dim=1)
        best_centre[start:start + len(index)] = index.cpu()
        confidence[start:start + len(value)] = value.cpu()
        if rule == "nearest":
            if allowed is not None:
                similarity[~allowed[start:start + len(similarity)]] = -torch.inf
            value, index = torch.cat([top_value, similarity.T], dim=1), \
                torch.cat([top_index, torch.arange(start, start + len(similarity), device=dev).expand(len(centres), -1)],
                          dim=1)
            kept = value.topk(min(per_centre, value.shape[1]), dim=1)
            top_value, top_index = kept.values, index.gather(1, kept.indices)
    best_centre = best_centre.numpy()
    confidence = confidence.numpy()
    if keep is not None:
        best_centre[~keep] = -1
    if rule == "nearest":
        chosen = top_index[torch.isfinite(top_value)].cpu().numpy()
        bank_index = np.unique(chosen).astype(np.int64)
        centre = best_centre[bank_index]
    else:
        # by centre, most confident first; lexsort is stable, so ties keep bank order (reproducible)
        order = np.lexsort((-confidence, best_centre))
        ranked_centre = best_centre[order]
        rank = np.arange(len(order)) - np.searchsorted(ranked_centre, ranked_centre)
        bank_index = order[(ranked_centre >= 0) & (rank < per_centre)].astype(np.int64)
        centre = best_centre[bank_index]
    return TextSelection(bank_index=bank_index, centre=centre, score=confidence[bank_index],
                         texts=np.asarray(texts)[bank_index], embeddings=np.asarray(text_embeddings)[bank_index],
                         bank_centre=best_centre, bank_score=confidence)


def build_semantic_space(image_embeddings: np.ndarray, n_centres: int,
                         banks: dict[Bank, tuple[np.ndarray, np.ndarray]], *,
                         per_centre: int = TEXTS_PER_CENTRE, rule: str = "confident", n_init: int | str = "auto",
                         seed: int = 0,
                         device: str | torch.device = "auto",
                         noun_hierarchy: HierarchyFilter | None = None, keep_all: tuple[Bank, ...] = (),
                         space_images: np.ndarray | None = None) -> SemanticSpace:
    """k-means on ``image_embeddings`` (N, d) into ``n_centres``, then select texts from each bank.

    ``space_images`` (T, d): make the centres from these instead (TAC's setting: the training split),
    and give each of the N images its nearest centre.

    ``banks`` maps a bank to its (embeddings (M, d), texts (M,)); ``noun_hierarchy`` (MCA's filter)
    limits the nouns that may be selected; ``rule`` is the selection's reading (module docstring); the banks in ``keep_all`` are kept whole (SAC's per-image
    captions are each image's own text, relevant by construction). Restarts matter here: two classes
    merged under one centre leave a class without texts.
    """
    source = image_embeddings if space_images is None else space_images
    kmeans = spherical_kmeans(source, n_centres, n_init=n_init, seed=seed, device=device)
    centre_of_image = kmeans.labels if space_images is None else nearest_centres(image_embeddings, kmeans.centres,
                                                                                   device)
    masks = {Bank.NOUNS: noun_hierarchy.keep} if noun_hierarchy is not None else {}
    selections = {Bank(bank): select_texts(kmeans.centres, embeddings, texts,
                                           len(texts) if bank in keep_all else per_centre, device=device,
                                           keep=masks.get(Bank(bank)), rule=rule)
                  for bank, (embeddings, texts) in banks.items()}
    return SemanticSpace(kmeans.centres, centre_of_image, selections, noun_hierarchy)
