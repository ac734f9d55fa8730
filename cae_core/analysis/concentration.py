"""How concentrated each image's correspondences are, and Theorem 1's check on real features.

**Row concentration.** An alignment gives each image i a row w_i over the S selected texts (rescaled to
sum to one): the softmax retrieval row softmax_j(s_ij / T), or the OT plan row, which is
softmax_j(s_ij / eps + g_j) with g the plan's column potentials (``ot_alignment``). Per image:
the share of its heaviest text (top-1), of its ``top`` heaviest (top-10), and the effective number of
texts exp(H(w_i)) (1 for a one-hot row, S for a uniform one). A row that says what the image shows puts
most of its mass on a few texts.

**Theorem 1's check.** CAE's Theorem 1 compares OT with softmax retrieval at one temperature. Measured
here: the share of an image's mass on nouns whose WordNet lineage misses its class. The rule:

- a class name resolves to every WordNet noun sense of the name, spaces as underscores, as WordNet's
  own lookup finds it (morphy: "tacos" -> taco); a name with no noun sense ("Apply Eye Makeup", DTD's
  adjectives) leaves the class unresolved and its images out of the measure. Every sense counts
  ("bass" the fish and the instrument) because the class name alone cannot say which is meant: the
  rule errs towards "in the lineage", so the off-lineage share is a lower bound;
- a noun is in the lineage of a class when one of the class's senses is the noun's synset or among its
  hypernyms (the noun names the class or a kind of it: "poodle" for dog), or when the noun is among
  the hypernyms of one of the class's senses *and* is more than ``GENERAL_DEPTH`` = 5 steps below
  "entity" (the class is a kind of the noun: "canine", "fish" or "musical instrument" describe it
  rightly, while MCA's too-general nouns such as "person" or "object" would match any odd sense of a
  name, as "cat" the slang word for a man);
- a noun whose synset WordNet 3.0 lacks (LVIS's stop_sign.n.01) cannot be placed: it counts as off.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..arrays import rows_per_block
from ..device import as_tensor, resolve_device, with_memory_fallback
from ..errors import CaeError
from ..inputs.bundle import FeaturesBundle
from ..method.alignment import Alignment, SinkhornConvergenceWarning, kernel_budget, transport_plan
from ..method.hierarchy import GENERAL_DEPTH
from ..method.methods import CaeConfig
from ..method.run import semantic_space_for
from ..method.semantic_space import Bank, default_n_centres

TOP = 10
EPSILONS = (0.1, 0.05, 0.02, 0.01, 0.005)

RowBlocks = Iterable[tuple[slice, torch.Tensor]]  # (rows, (B, S) block of rows that each sum to one)


@dataclass
class RowConcentration:
    """Per image (N,): ``top1`` the heaviest text's share of its row, ``top`` the share of its ``k``
    heaviest, ``effective`` exp(entropy of the row), between 1 and ``n_texts``."""

    top1: np.ndarray
    top: np.ndarray
    effective: np.ndarray
    k: int
    n_texts: int

    def _named(self) -> dict[str, np.ndarray]:
        return {"top1_share": self.top1, f"top{self.k}_share": self.top, "effective_texts": self.effective}

    def summary(self) -> dict[str, float]:
        """Means and medians over the images, keyed ``top1_share_mean``, ``top10_share_median``, ..."""
        return {f"{name}_{stat}": float(reduce(values)) for name, values in self._named().items()
                for stat, reduce in (("mean", np.mean), ("median", np.median))}

    def median(self) -> dict[str, float]:
        """Medians over the images, keyed ``top1_share``, ``top10_share``, ``effective_texts``."""
        return {name: float(np.median(values)) for name, values in self._named().items()}

    def of_image(self, image: int) -> dict[str, float]:
        """One image's three numbers, keyed as ``median``."""
        return {name: float(values[image]) for name, values in self._named().items()}


def concentration(blocks: RowBlocks, top: int = TOP) -> RowConcentration:
    """Top-1 share, top-``top`` share and effective number of texts of every row in ``blocks``."""
    if not isinstance(top, (int, np.integer)) or top < 1:
        raise CaeError(f"top must be a positive integer, got {top!r}")
    top1, top_share, effective = [], [], []
    n_texts = 0
    for _, block in blocks:
        n_texts = block.shape[1]
        values = block.topk(min(top, n_texts), dim=1).values
        top1.append(values[:, 0].cpu())
        top_share.append(values.sum(dim=1).cpu())
        # entr(p) = -p log p, 0 at p = 0: underflowed entries of a sharp row add nothing
        effective.append(torch.special.entr(block).sum(dim=1, dtype=torch.float64).exp().cpu())
    if not top1:
        raise CaeError("no rows to measure: the alignment has no images")
    return RowConcentration(torch.cat(top1).numpy().astype(np.float64), torch.cat(top_share).numpy().astype(np.float64),
                            torch.cat(effective).numpy(), int(top), n_texts)


def retrieval_rows(image_embeddings: np.ndarray, text_embeddings: np.ndarray, temperature: float,
                   column_offsets: np.ndarray | None = None, device: torch.device | str = "cpu",
                   block_rows: int = 8192) -> Iterator[tuple[slice, torch.Tensor]]:
    """Blocks of rows softmax_j(s_ij / temperature + g_j), s the cosine and g ``column_offsets`` (S,).

    Without offsets: softmax retrieval. With the OT plan's column potentials g at temperature eps: the
    plan's rows rescaled to one (``ot_alignment``'s weights), without the (N, S) plan.
    """
    if not temperature > 0:
        raise CaeError(f"the temperature must be positive, got {temperature!r}")
    dev = resolve_device(device)
    texts = F.normalize(as_tensor(text_embeddings, dev), dim=1)
    offsets = None
    if column_offsets is not None:
        offsets = as_tensor(column_offsets, dev)
        if offsets.shape != (texts.shape[0],) or not torch.isfinite(offsets).all():
            raise CaeError(f"column_offsets must be {texts.shape[0]} finite values (one per text), "
                           f"got shape {tuple(offsets.shape)}")
    step = rows_per_block(texts.shape[0], block_rows)
    for start in range(0, len(image_embeddings), step):
        rows = slice(start, start + step)
        logits = (F.normalize(as_tensor(image_embeddings[rows], dev), dim=1) @ texts.T).div_(temperature)
        if offsets is not None:
            logits += offsets
        yield rows, torch.softmax(logits, dim=1)


def alignment_rows(image_embeddings: np.ndarray, text_embeddings: np.ndarray, alignment: Alignment,
                   device: torch.device | str = "cpu") -> Iterator[tuple[slice, torch.Tensor]]:
    """The rows of a run's ``alignment`` (rescaled to one), rebuilt from its temperature and column potential."""
    return retrieval_rows(image_embeddings, text_embeddings, alignment.temperature, alignment.column_potential,
                          device)


def plan_rows(plan: np.ndarray, block_rows: int = 8192, device: torch.device | str = "cpu"
              ) -> Iterator[tuple[slice, torch.Tensor]]:
    """Blocks of a materialised plan's (N, S) rows, each rescaled to sum to one."""
    dev = resolve_device(device)
    step = rows_per_block(plan.shape[1], block_rows)
    for start in range(0, plan.shape[0], step):
        rows = slice(start, start + step)
        block = as_tensor(plan[rows], dev)
        yield rows, block / block.sum(dim=1, keepdim=True).clamp_min(1e-30)


def row_concentration(image_embeddings: np.ndarray, text_embeddings: np.ndarray, temperature: float,
                      column_offsets: np.ndarray | None = None, top: int = TOP, device: str | torch.device = "auto",
                      block_rows: int = 8192) -> RowConcentration:
    """Concentration of the rows softmax_j(s_ij / temperature + g_j) (``retrieval_rows``), block by block:
    memory O(block_rows * S); CUDA out-of-memory falls back to smaller blocks, then to the CPU."""
    return with_memory_fallback(
        lambda dev, block: concentration(retrieval_rows(image_embeddings, text_embeddings, temperature,
                                                        column_offsets, dev, block), top),
        resolve_device(device), block_rows)


@dataclass
class OtRows:
    """The OT plan between images and texts, materialised, and whether Sinkhorn met its tolerance."""

    plan: np.ndarray
    converged: bool

    def blocks(self, block_rows: int = 8192) -> Iterator[tuple[slice, torch.Tensor]]:
        return plan_rows(self.plan, block_rows)


def ot_rows(image_embeddings: np.ndarray, text_embeddings: np.ndarray, config: CaeConfig) -> OtRows:
    """The engine's OT plan (``transport_plan``) at ``config``'s epsilon and stopping rule.

    ``transport_plan`` holds the whole (N, S) plan, so this refuses sizes beyond the kernel budget;
    with the plan's column potentials, ``row_concentration`` needs no plan at all.
    """
    device = resolve_device(config.device)
    size = len(image_embeddings) * len(text_embeddings) * 4
    if size > kernel_budget(device):
        raise CaeError(f"the OT rows of {len(image_embeddings):,} images x {len(text_embeddings):,} texts "
                       f"({size / 2**30:.1f} GiB) are too large to recompute here")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SinkhornConvergenceWarning)
        plan = transport_plan(image_embeddings, text_embeddings, epsilon=config.epsilon, tol=config.sinkhorn_tol,
                              max_iter=config.sinkhorn_max_iter, device=device)
    return OtRows(plan, not any(issubclass(w.category, SinkhornConvergenceWarning) for w in caught))


# --- Theorem 1: mass on nouns outside the class's WordNet lineage ------------------------------------------

@lru_cache(maxsize=None)
def _noun_synset(name: str):
    """The WordNet 3.0 synset called ``name``, or None where WordNet lacks it."""
    from nltk.corpus.reader.wordnet import WordNetError

    from ..inputs.corpora import wordnet_reader

    try:
        return wordnet_reader().synset(name) if name else None
    except WordNetError:
        return None


@lru_cache(maxsize=None)
def _upward(name: str) -> frozenset[str]:
    """The synset ``name`` and all its hypernyms (instance hypernyms too), by name; empty if unknown."""
    synset = _noun_synset(name)
    if synset is None:
        return frozenset()
    return frozenset(node.name() for node in {synset} | set(synset.closure(
        lambda s: s.hypernyms() + s.instance_hypernyms())))


@lru_cache(maxsize=None)
def class_senses(class_name: str) -> tuple[str, ...]:
    """Every WordNet noun synset the class name denotes (see the module); () when it has none."""
    from ..inputs.corpora import wordnet_reader

    key = "_".join(str(class_name).strip().lower().split())
    return tuple(synset.name() for synset in wordnet_reader().synsets(key, pos="n")) if key else ()


def in_lineage(noun_synset: str, senses: Sequence[str]) -> bool:
    """Whether the noun (a synset name) is in the lineage of a class with these ``senses`` (the module's rule)."""
    noun_up = _upward(noun_synset)
    if not noun_up:
        return False
    specific = _noun_synset(noun_synset).min_depth() > GENERAL_DEPTH
    return any(sense in noun_up or (specific and noun_synset in _upward(sense)) for sense in senses)


@dataclass
class ClassLineage:
    """Per class (C): ``senses`` the synsets its name resolved to (() unresolved); ``on`` (C, S) whether
    each selected noun is in the class's lineage."""

    senses: list[tuple[str, ...]]
    on: np.ndarray

    @property
    def resolved(self) -> np.ndarray:
        return np.array([bool(senses) for senses in self.senses])


def class_lineage(class_names: Sequence[str], noun_synsets: Sequence[str]) -> ClassLineage:
    """Which of the nouns (their synset names, one per selected noun) lie in each class's lineage."""
    senses = [class_senses(str(name)) for name in class_names]
    on = np.array([[in_lineage(str(noun), own) for noun in noun_synsets] for own in senses], dtype=bool)
    return ClassLineage(senses, on.reshape(len(senses), len(noun_synsets)))


def off_lineage_mass(blocks: RowBlocks, labels: np.ndarray, lineage: ClassLineage) -> np.ndarray:
    """Per image (N,), the share of its row on nouns outside its class's lineage; NaN for an image with no
    label (-1) or whose class did not resolve. ``labels`` index ``lineage``'s classes."""
    labels = np.asarray(labels)
    if labels.size and labels.max() >= len(lineage.senses):
        raise CaeError(f"label {int(labels.max())} has no class name ({len(lineage.senses)} classes)")
    counted = (labels >= 0) & lineage.resolved[np.clip(labels, 0, None)]
    out = np.full(len(labels), np.nan)
    off = None
    for rows, block in blocks:
        if off is None:
            if block.shape[1] != lineage.on.shape[1]:
                raise CaeError(f"the rows have {block.shape[1]} texts but the lineage {lineage.on.shape[1]} nouns")
            off = torch.as_tensor(~lineage.on, dtype=block.dtype, device=block.device)
        index = np.arange(len(labels))[rows]
        keep = index[counted[rows]]
        if len(keep):
            chosen = torch.as_tensor(keep - index[0], device=block.device)
            classes = torch.as_tensor(labels[keep], device=block.device)
            out[keep] = (block[chosen] * off[classes]).sum(dim=1).cpu().numpy()
    return out


def theorem1_classes(bundle: FeaturesBundle, name: str) -> int:
    """K for the check (the number of classes the labels use), once the bundle is known to have what the
    check needs: labels, class names and the nouns' WordNet synsets."""
    if not bundle.has_labels or bundle.class_names is None:
        raise CaeError(f"{name}: Theorem 1's check needs labels and class names; this bundle lacks them")
    if bundle.noun_synsets is None:
        raise CaeError(f"{name}: Theorem 1's check needs the nouns' WordNet synsets (noun_synsets)")
    return int(np.unique(bundle.labels[bundle.labels >= 0]).size)


def bundle_lineage(bundle: FeaturesBundle, bank_index: np.ndarray) -> ClassLineage | None:
    """The lineage of the bundle's classes over its nouns at ``bank_index`` (a selection's rows), or None
    where the bundle lacks labels, class names or the nouns' synsets."""
    if not bundle.has_labels or bundle.class_names is None or bundle.noun_synsets is None:
        return None
    return class_lineage(bundle.class_names, bundle.noun_synsets[bank_index])


def measure_rows(make_rows: Callable[[], RowBlocks], labels: np.ndarray | None = None,
                 lineage: ClassLineage | None = None, top: int = TOP) -> dict[str, float]:
    """One alignment's figures: ``concentration(...).summary()``, and with a lineage the mean off-lineage
    mass over the images it counts (``off_lineage_mass``; NaN when it counts none). ``make_rows()`` gives
    a fresh iterator of row blocks each time (``retrieval_rows``, ``OtRows.blocks``)."""
    out = concentration(make_rows(), top).summary()
    if lineage is not None:
        off = off_lineage_mass(make_rows(), labels, lineage)
        out["off_lineage_mass"] = float(np.nanmean(off)) if not np.isnan(off).all() else np.nan
    return out


def theorem1_check(bundle: FeaturesBundle, name: str, epsilons: Sequence[float] = EPSILONS, seed: int = 0,
                   device: str = "auto", top: int = TOP,
                   progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """OT against softmax at the same temperature, per epsilon, on the nouns the semantic space selects
    (CaeConfig's defaults, K = the number of labelled classes): one row per (epsilon, alignment) with the
    off-lineage mass (mean over the counted images; ``uniform_off_lineage_mass`` for rows spread evenly), the
    concentration summary and the resolved shares."""
    if not epsilons or any(not eps > 0 for eps in epsilons):
        raise CaeError(f"epsilons must be positive, got {list(epsilons)!r}")
    k = theorem1_classes(bundle, name)
    base = CaeConfig(device=device)
    space = semantic_space_for(bundle, (Bank.NOUNS,), default_n_centres(bundle.n_images, k, base.train_size),
                               base, seed)
    selection = space.selections[Bank.NOUNS]
    images, texts = bundle.image_embeddings, selection.embeddings
    lineage = bundle_lineage(bundle, selection.bank_index)
    # what a row that says nothing gets: equal mass on every selected noun
    uniform = off_lineage_mass(plan_rows(np.ones((len(images), len(texts)), dtype=np.float32)), bundle.labels,
                               lineage)
    present = np.unique(bundle.labels[bundle.labels >= 0])
    common = {"bundle": name, "n_images": len(images), "n_classes": k, "n_texts": len(texts),
              "resolved_class_share": float(lineage.resolved[present].mean()),
              "counted_image_share": float(np.mean(~np.isnan(uniform))),
              "uniform_off_lineage_mass": float(np.nanmean(uniform)) if not np.isnan(uniform).all() else np.nan}
    records = []
    for eps in epsilons:
        if progress:
            progress(f"{name}: eps = {eps:g}")
        ot = ot_rows(images, texts, CaeConfig(device=device, epsilon=float(eps)))
        for kind, make_rows, converged in (
                ("ot", ot.blocks, ot.converged),
                ("softmax", lambda: retrieval_rows(images, texts, eps, device=device), True)):
            records.append({**common, "epsilon": float(eps), "alignment": kind, "converged": converged,
                            **measure_rows(make_rows, bundle.labels, lineage, top)})
    return pd.DataFrame.from_records(records)


def theorem1_markdown(table: pd.DataFrame, top: int = TOP) -> str:
    """The check as a markdown table: one line per bundle and epsilon, OT / softmax side by side (means
    over the images); a bundle's first line gives S, its resolved classes and an evenly spread row's
    off-lineage mass."""
    columns = (("off_lineage_mass", "{:.3f}"), ("top1_share_mean", "{:.3f}"), (f"top{top}_share_mean", "{:.3f}"),
               ("effective_texts_mean", "{:.1f}"))
    lines = [f"| bundle | ε | off-lineage mass, OT / softmax | top-1 share | top-{top} share | effective texts |",
             "|---|---|---|---|---|---|"]
    for (bundle, eps), pair in table.groupby(["bundle", "epsilon"], sort=False):
        ot, softmax = (pair[pair["alignment"] == kind].iloc[0] for kind in ("ot", "softmax"))
        first = pair.index[0] == table.index[table["bundle"] == bundle][0]
        label = (f"{bundle}: S = {ot['n_texts']}, {ot['resolved_class_share']:.0%} of classes resolved, "
                 f"evenly spread row {ot['uniform_off_lineage_mass']:.3f}") if first else ""
        cells = [" / ".join(form.format(row[name]) for row in (ot, softmax)) for name, form in columns]
        flag = "" if ot["converged"] else " (OT not converged)"
        lines.append(f"| {label} | {eps:g}{flag} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
