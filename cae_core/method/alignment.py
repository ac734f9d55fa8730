"""Aligning images with selected texts: entropic optimal transport (CAE) or softmax retrieval (TAC).

Both give, per image i, weights w_ij over the selected texts j (each row sums to one) and the
correspondence x[i] = normalise(sum_j w_ij * s_ij * u_j) (CAE's formula; s_ij is the cosine).
Under OT the weights are the rows of the transport plan, whose column marginals keep every text
in use; under softmax each image picks its favourites independently (winner-takes-all).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..arrays import rows_per_block
from ..device import as_tensor, resolve_device, with_memory_fallback

# Inferred, not stated by CAE: eps = 0.05 on cosine scores, as SwAV uses for its Sinkhorn. Reason: one
# image's cosines to the selected texts span ~0.1-0.3, so eps = 0.05 spreads a plan row over the few
# texts within ~0.05 of its best match; as eps -> 0 each row becomes one text, and the uniform column
# marginal then forces hard, balanced assignments (with S ~ N/2 texts, images of a large class are
# pushed onto other classes' texts). Measured on the real CLIP features (README, `sweep`): the class
# separation of the centred correspondences and the ACC fall from eps = 0.05 to 0.005 on both sets.
# Convergence there: 11 iterations at 0.05; 361 at 0.005 and 1,171 at 0.002 on stl10-vitb16.
# eps-scaling (POT's sinkhorn_epsilon_scaling) was tried and measured: it did not lower the count
# (334 and 1,475), because the last stage's rate, set by the final eps, dominates. The solver is in
# the log domain, so small eps stays finite; it warns when it stops at its cap, as POT does.
EPSILON = 0.05
SINKHORN_TOL = 1e-6  # L2 error of the column marginal, checked every 10 iterations as POT does
SINKHORN_MAX_ITER = 2000
RETRIEVAL_TAU = 0.005  # TAC's public code (retrieve_text.py)
TOP_MATCHES = 10


def _physical_memory() -> int:
    """This machine's memory in bytes (0 where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0


# The (N, S) log-kernel is kept whole while it fits a quarter of the machine's memory (1 GiB at least;
# 6 GiB on this 24 GB machine; on CUDA also a quarter of the GPU's); beyond that it is recomputed per
# row block, so memory is O(N * d + S * d). Recomputing costs a product per iteration: ~14 s at
# N = 50,000, S = 21,000 on this (loaded) CPU, against ~4 s for the rest of an iteration.
MEMORY_BUDGET_BYTES = max(1 << 30, _physical_memory() // 4)


@dataclass
class Alignment:
    """Images (N) aligned with S selected texts.

    ``correspondence`` (N, d) unit rows; ``top_text`` (N, k) indices into the selection, best first;
    ``top_weight`` (N, k) their share of the image's mass (transport mass or softmax probability);
    ``top_similarity`` (N, k) cosine; ``text_usage`` (S,) share of all images' mass each text
    received (sums to one); ``kind`` is ``"ot"`` or ``"softmax"``; ``n_iter`` and
    ``marginal_error`` describe Sinkhorn's convergence (0 for softmax); ``converged`` is False when
    the solver stopped at its iteration cap (a ``SinkhornConvergenceWarning`` was issued). Every row
    is softmax_j(s_ij / ``temperature`` + ``column_potential``_j) (no potential for softmax), so a
    row can be rebuilt without the (N, S) plan.
    """

    kind: str
    correspondence: np.ndarray
    top_text: np.ndarray
    top_weight: np.ndarray
    top_similarity: np.ndarray
    text_usage: np.ndarray
    n_iter: int = 0
    marginal_error: float = 0.0
    converged: bool = True
    temperature: float = 1.0
    column_potential: np.ndarray | None = None


class SinkhornConvergenceWarning(UserWarning):
    """Sinkhorn stopped at its iteration cap before the column marginal met the tolerance (POT warns likewise)."""


def kernel_budget(device: torch.device) -> int:
    """Bytes the whole (N, S) log-kernel may take on ``device``: ``MEMORY_BUDGET_BYTES``, and on CUDA
    no more than a quarter of the GPU's memory."""
    if device.type == "cuda":
        return min(MEMORY_BUDGET_BYTES, torch.cuda.get_device_properties(device).total_memory // 4)
    return MEMORY_BUDGET_BYTES


class _LogKernel:
    """The (N, S) matrix s_ij / scale, held whole when it fits ``kernel_budget``, else made per row
    block; either way it is visited in blocks of ``block_rows`` rows (fewer where S is large)."""

    def __init__(self, images: torch.Tensor, texts: torch.Tensor, scale: float, block_rows: int):
        self.images, self.texts, self.scale = images, texts, scale
        fits = images.shape[0] * texts.shape[0] * 4 <= kernel_budget(images.device)
        self.block_rows = rows_per_block(texts.shape[0], block_rows)
        self.whole = self._product(slice(None)) if fits else None

    def _product(self, rows: slice) -> torch.Tensor:
        return (self.images[rows] @ self.texts.T).div_(self.scale)  # in place: one (B, S) allocation

    def blocks(self) -> Iterator[tuple[slice, torch.Tensor]]:
        for start in range(0, self.images.shape[0], self.block_rows):
            rows = slice(start, start + self.block_rows)
            yield rows, self.whole[rows] if self.whole is not None else self._product(rows)


def _shifted_logsumexp(block: torch.Tensor, shift: torch.Tensor, dim: int, buffer: torch.Tensor) -> torch.Tensor:
    """logsumexp(block + shift, dim) with every (B, S) intermediate held in ``buffer``."""
    out = buffer[: block.shape[0]]
    torch.add(block, shift, out=out)
    peak = out.amax(dim=dim, keepdim=True)
    return out.sub_(peak).exp_().sum(dim=dim).log_().add_(peak.squeeze(dim))


def _sinkhorn_potentials(kernel: _LogKernel, tol: float, max_iter: int,
                         progress: Callable[[float], None] | None) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """Log-domain Sinkhorn with uniform marginals: plan_ij = exp(L_ij + f_i + g_j).

    The iteration and stopping rule are POT's ``sinkhorn_log`` (column update, row update, column
    marginal error every 10 iterations), so the two solvers can be compared step for step. One pass
    over the kernel per iteration: each row block's f update is followed by its share of the column
    log-sums, which give both the next g and the marginal error, so a kernel made per block costs
    one product per iteration.
    """
    n, s = kernel.images.shape[0], kernel.texts.shape[0]
    device = kernel.images.device
    log_a = torch.full((n,), -np.log(n), device=device)
    log_b = torch.full((s,), -np.log(s), device=device)
    f = torch.zeros(n, device=device)
    g = torch.zeros(s, device=device)
    # one scratch block reused by every update: a fresh (N, S) temporary per update costs page faults
    buffer = torch.empty((min(n, kernel.block_rows), s), device=device)
    error = float("inf")
    iteration = 0
    column_lse = torch.logsumexp(torch.stack([_shifted_logsumexp(block, f[rows, None], 0, buffer)
                                              for rows, block in kernel.blocks()]), dim=0)
    for iteration in range(1, max_iter + 1):
        g = log_b - column_lse
        parts = []
        for rows, block in kernel.blocks():
            f[rows] = log_a[rows] - _shifted_logsumexp(block, g, 1, buffer)
            parts.append(_shifted_logsumexp(block, f[rows, None], 0, buffer))
        column_lse = torch.logsumexp(torch.stack(parts), dim=0)
        if (iteration - 1) % 10 == 0:
            # the plan's column marginal, sum_i exp(L_ij + f_i + g_j), as POT measures it
            error = float(torch.linalg.vector_norm((g + column_lse).exp() - log_b.exp()))
            if progress is not None:
                progress(min(1.0, np.log(max(error, tol)) / np.log(tol)) if error < 1 else 0.0)
            if error < tol:
                break
    if error >= tol:
        warnings.warn(f"Sinkhorn did not converge: column-marginal error {error:.2e} after {iteration} "
                      f"iterations (tolerance {tol:g}); raise the iteration cap or eps",
                      SinkhornConvergenceWarning, stacklevel=2)
    return f, g, iteration, error


def transport_plan(image_embeddings: np.ndarray, text_embeddings: np.ndarray, epsilon: float = EPSILON,
                   tol: float = SINKHORN_TOL, max_iter: int = SINKHORN_MAX_ITER,
                   device: str | torch.device = "auto") -> np.ndarray:
    """The entropic OT plan (N, S) between uniform images and texts with cost 1 - cosine.

    Materialises the whole plan: meant for small problems, tests and inspection.
    """
    dev = resolve_device(device)
    images = F.normalize(as_tensor(image_embeddings, dev), dim=1)
    texts = F.normalize(as_tensor(text_embeddings, dev), dim=1)
    kernel = _LogKernel(images, texts, epsilon, block_rows=images.shape[0])
    f, g, _, _ = _sinkhorn_potentials(kernel, tol, max_iter, None)
    return torch.exp(kernel.whole + f[:, None] + g).cpu().numpy()


def _summarise(kind: str, images: torch.Tensor, texts: torch.Tensor, row_weights, block_rows: int,
               top_k: int, weight_by_similarity: bool, n_iter: int = 0, error: float = 0.0,
               converged: bool = True) -> Alignment:
    """Correspondences and top matches from ``row_weights(rows, similarity) -> (B, S) rows summing to 1``."""
    block_rows = rows_per_block(texts.shape[0], block_rows)
    correspondence, top_text, top_weight, top_similarity = [], [], [], []
    usage = torch.zeros(texts.shape[0], device=images.device, dtype=torch.float64)
    k = min(top_k, texts.shape[0])
    for start in range(0, images.shape[0], block_rows):
        rows = slice(start, start + block_rows)
        similarity = images[rows] @ texts.T
        weights = row_weights(rows, similarity)
        mixing = weights * similarity if weight_by_similarity else weights
        correspondence.append(F.normalize(mixing @ texts, dim=1).cpu())
        value, index = weights.topk(k, dim=1)
        top_text.append(index.cpu())
        top_weight.append(value.cpu())
        top_similarity.append(similarity.gather(1, index).cpu())
        usage += weights.sum(dim=0, dtype=torch.float64)
    return Alignment(kind=kind, correspondence=torch.cat(correspondence).numpy(),
                     top_text=torch.cat(top_text).numpy(), top_weight=torch.cat(top_weight).numpy(),
                     top_similarity=torch.cat(top_similarity).numpy(),
                     text_usage=(usage / usage.sum()).cpu().numpy(), n_iter=n_iter, marginal_error=error,
                     converged=converged)


def ot_alignment(image_embeddings: np.ndarray, text_embeddings: np.ndarray, *, epsilon: float = EPSILON,
                 tol: float = SINKHORN_TOL, max_iter: int = SINKHORN_MAX_ITER, top_k: int = TOP_MATCHES,
                 device: str | torch.device = "auto", block_rows: int = 8192,
                 progress: Callable[[float], None] | None = None) -> Alignment:
    """CAE's alignment: Sinkhorn plan between images (N, d) and texts (S, d), rows rescaled to one.

    Memory stays O(N * d + S * d) plus one block of rows beyond the kernel budget; CUDA
    out-of-memory falls back to smaller blocks, then to the CPU.
    """
    def compute(dev: torch.device, block: int) -> Alignment:
        images = F.normalize(as_tensor(image_embeddings, dev), dim=1)
        texts = F.normalize(as_tensor(text_embeddings, dev), dim=1)
        kernel = _LogKernel(images, texts, epsilon, block)
        f, g, n_iter, error = _sinkhorn_potentials(kernel, tol, max_iter, progress)
        # a row of the plan divided by its sum: the share of image i's mass sent to each text
        summary = _summarise("ot", images, texts,
                             lambda rows, similarity: torch.softmax(similarity / epsilon + g, dim=1),
                             block, top_k, True, n_iter, error, error < tol)
        return replace(summary, temperature=epsilon, column_potential=g.cpu().numpy())

    return with_memory_fallback(compute, resolve_device(device), block_rows)


def softmax_alignment(image_embeddings: np.ndarray, text_embeddings: np.ndarray, *,
                      temperature: float = RETRIEVAL_TAU, top_k: int = TOP_MATCHES,
                      weight_by_similarity: bool = True, device: str | torch.device = "auto",
                      block_rows: int = 8192) -> Alignment:
    """Softmax retrieval: w_ij = softmax_j(s_ij / temperature), no column constraint.

    ``weight_by_similarity=False`` is TAC's retrieval, normalise(softmax(s / tau) @ u); True keeps
    CAE's s_ij factor so that the only change from ``ot_alignment`` is the plan (the ablation).
    """
    def compute(dev: torch.device, block: int) -> Alignment:
        images = F.normalize(as_tensor(image_embeddings, dev), dim=1)
        texts = F.normalize(as_tensor(text_embeddings, dev), dim=1)
        return replace(_summarise("softmax", images, texts,
                                  lambda rows, similarity: torch.softmax(similarity / temperature, dim=1),
                                  block, top_k, weight_by_similarity), temperature=temperature)

    return with_memory_fallback(compute, resolve_device(device), block_rows)
