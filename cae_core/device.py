"""Where the engine's tensors live, the retry that turns GPU out-of-memory into smaller blocks, and the
CPU threads a loop runs on."""

from __future__ import annotations

import ctypes
from contextlib import contextmanager
from functools import cache
from typing import Callable, Iterator, TypeVar

import torch

from .errors import CaeError

T = TypeVar("T")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; names are validated."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise CaeError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise CaeError(f"device {device!r} was asked for but CUDA is not available; use --device cpu")
    return resolved


def with_memory_fallback(compute: Callable[[torch.device, int], T], device: torch.device,
                         block_rows: int, min_block_rows: int = 256) -> T:
    """Run ``compute(device, block_rows)``; on CUDA out-of-memory halve the block, then use the CPU.

    Running out of GPU memory must never fail a run: the result is the same, only slower.
    """
    while True:
        try:
            return compute(device, block_rows)
        except torch.OutOfMemoryError:
            if device.type != "cuda":
                raise
            torch.cuda.empty_cache()
            if block_rows > min_block_rows:
                block_rows = max(min_block_rows, block_rows // 2)
            else:
                device = torch.device("cpu")


def as_tensor(array, device: torch.device) -> torch.Tensor:
    """float32 tensor on ``device`` (numpy arrays are not copied on the CPU)."""
    return torch.as_tensor(array, dtype=torch.float32, device=device)


@cache
def _openmp() -> ctypes.CDLL | None:
    """The OpenMP runtime torch's CPU operations run on (libgomp, which torch's Linux wheels load), or None."""
    try:
        return ctypes.CDLL("libgomp.so.1")
    except OSError:
        return None


@contextmanager
def one_cpu_thread() -> Iterator[None]:
    """torch's CPU operations started by the calling thread inside the block run on that thread alone.

    For a loop of serial work (single-threaded matrix-vector products) with a short parallel step in each
    pass: the second thread, between the steps, spins waiting for work and takes cycles and memory
    bandwidth from the first. OpenMP's thread count is a per-thread setting (``omp_set_num_threads``), so
    other threads keep theirs; ``torch.set_num_threads`` would also change the count that threads starting
    meanwhile take. Where the runtime is not libgomp the block runs unchanged.
    """
    runtime = _openmp()
    if runtime is None:
        yield
        return
    threads = runtime.omp_get_max_threads()
    runtime.omp_set_num_threads(1)
    try:
        yield
    finally:
        runtime.omp_set_num_threads(threads)
