"""Encoding shared by ``torchrun`` workers: each encodes its share of the cache chunks, rank 0 writes.

``torchrun --nproc_per_node N -m cae_core encode ...`` starts N copies of the ordinary command, told
apart by the environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``). Each stage (images, nouns,
captions) is one chunked cache entry: every worker computes the missing chunks whose index modulo N
is its rank, writes them to the shared cache and waits for the others; then every worker reads the
complete entry, so what follows is the single-process code unchanged, and rank 0 writes the bundle.
At each wait the workers exchange only who failed and why, over gloo: the embeddings travel through
the cache, so no GPU collective (NCCL) is needed.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterable, Iterator, Mapping

from ..device import resolve_device
from ..errors import CaeError

# the longest a worker waits for the others at the end of a stage: the gap between the workers'
# finishing times (start-up included), not the length of the encoding
_WAIT = timedelta(minutes=30)


@dataclass(frozen=True)
class Shard:
    """This process's place among the torchrun workers."""

    rank: int
    world_size: int
    local_rank: int

    def owned(self, chunks: Iterable[int]) -> list[int]:
        """The chunks this worker computes: index % world_size == rank, so every worker agrees on a
        chunk's owner whenever it looks at which chunks are missing."""
        return [index for index in chunks if index % self.world_size == self.rank]

    def say(self, message: str) -> None:
        """Print ``message`` as this worker's (``[rank 1/2] ...``)."""
        print(f"[rank {self.rank}/{self.world_size}] {message}", flush=True)

    def select_device(self, device: str) -> str:
        """``device`` for this worker: CUDA without an index becomes ``cuda:LOCAL_RANK``, one GPU each,
        made the current device so that nothing of this worker (pinned memory, caches) lands on GPU 0."""
        resolved = resolve_device(device)
        if resolved.type != "cuda":
            return str(resolved)
        import torch

        if resolved.index is None:
            if self.local_rank >= torch.cuda.device_count():
                raise CaeError(f"torchrun worker {self.local_rank} of this node has no GPU of its own "
                               f"({torch.cuda.device_count()} visible); use --nproc_per_node at most that")
            resolved = torch.device("cuda", self.local_rank)
        try:
            torch.cuda.set_device(resolved)
        except RuntimeError:  # an index past the GPUs there are
            raise CaeError(f"no GPU {resolved} on this node ({torch.cuda.device_count()} visible)") from None
        return str(resolved)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Run this worker's part of stage ``name``, then wait for every worker's part.

        A failure on any worker raises on every worker (a ``CaeError`` naming the failed rank and its
        message) rather than leaving the others waiting; the failed worker raises its own error.
        """
        try:
            yield
        except Exception as error:
            with contextlib.suppress(CaeError):  # another worker's failure: this one's own error comes first
                self._exchange(name, error)
            raise
        self._exchange(name, None)

    def _exchange(self, stage: str, error: Exception | None) -> None:
        """Tell every worker whether this one failed (joining the process group on first use); raise
        ``CaeError`` if another did, or if the others cannot be reached."""
        import torch.distributed as dist

        failures: list[str | None] = [None] * self.world_size
        try:
            if not dist.is_initialized():
                dist.init_process_group("gloo", rank=self.rank, world_size=self.world_size, timeout=_WAIT)
            dist.all_gather_object(failures, None if error is None else _one_line(error))
        except (RuntimeError, ValueError) as failure:  # torch's DistError family, env:// rendezvous errors
            raise CaeError(f"rank {self.rank}/{self.world_size} lost the other torchrun workers at the end "
                           f"of {stage}: {_one_line(failure)}") from None
        for rank, message in enumerate(failures):
            if message is not None and rank != self.rank:
                raise CaeError(f"rank {rank}/{self.world_size} failed while encoding {stage}: {message}")


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    return first if isinstance(error, CaeError) else f"{type(error).__name__}: {first}"


def shard_from_env(environ: Mapping[str, str] = os.environ) -> Shard | None:
    """This process's ``Shard`` when torchrun started several workers (``WORLD_SIZE`` > 1), else None."""
    try:
        world_size = int(environ.get("WORLD_SIZE") or 1)
        if world_size <= 1:
            return None
        rank = int(environ["RANK"])
        shard = Shard(rank, world_size, int(environ.get("LOCAL_RANK", rank)))
    except (KeyError, ValueError):
        shard = None
    if shard is None or not 0 <= shard.rank < world_size:
        raise CaeError(f"WORLD_SIZE={environ['WORLD_SIZE']} without a valid RANK and LOCAL_RANK; "
                       "start the workers with torchrun")
    return shard


def leave() -> None:
    """Close the workers' process group, if a stage opened one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
