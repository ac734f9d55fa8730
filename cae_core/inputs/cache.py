"""Content-addressed on-disk cache for arrays that are costly to compute (embeddings, projections).

An entry is a folder named by the sha256 of its key (canonical JSON of what the result depends on).
Its rows are stored in chunks, one file per chunk, each written atomically (temporary file, then
``os.replace``) and ending with the sha256 of its content: an interrupted computation resumes from
its last finished chunk, and a truncated or corrupted chunk is rebuilt with a warning, never trusted.
A lock file (``fcntl.flock``) next to the entry makes two processes computing the same entry wait
for each other instead of duplicating the work or interleaving their writes; workers that split an
entry's chunks between them (``torchrun``) share the lock instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np

from ..errors import CaeError
from ..files import atomic_write_bytes

logger = logging.getLogger(__name__)

_DIGEST_BYTES = 32
_META = "meta.json"


def cache_dir() -> Path:
    """The cache root: ``$CAE_CACHE_DIR``, else ``$XDG_CACHE_HOME/cae-explorer`` (``~/.cache/cae-explorer``)."""
    if os.environ.get("CAE_CACHE_DIR"):
        return Path(os.environ["CAE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "cae-explorer"


def cache_key(key_parts: Mapping) -> str:
    """sha256 of the canonical JSON of ``key_parts`` (sorted keys, no whitespace)."""
    canonical = json.dumps(key_parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def file_fingerprint(path: str | os.PathLike) -> list:
    """``[absolute path, size, mtime_ns]``: what a file contributes to a key without reading it."""
    stat = Path(path).stat()
    return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]


def texts_digest(texts: Iterable[str]) -> str:
    """sha256 of a list of texts, order included (texts are keyed by content, not by file)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def pack_strings(strings: Iterable[str]) -> np.ndarray:
    """UTF-8 blob (uint8) of NUL-separated strings: numpy's fixed-width str arrays waste space on long texts."""
    return np.frombuffer("\0".join(strings).encode("utf-8"), dtype=np.uint8)


def unpack_strings(blob: np.ndarray) -> np.ndarray:
    """Inverse of ``pack_strings``: an object array of str."""
    return np.array(blob.tobytes().decode("utf-8").split("\0"), dtype=object)


class ChunkedStore:
    """Rows ``0..n_rows`` of named arrays, stored as checksummed chunks of ``chunk_rows`` rows.

    Every chunk holds the same names; arrays share their first axis (the rows). ``n_rows=None``
    makes a single chunk of any length (``cached_arrays``). Typical use::

        store = ChunkedStore({"model": ..., "texts": ...}, n_rows, chunk_rows=4096)
        with store.locked():
            store.fill(batches_for(store.missing_rows()))
        arrays = store.read()
    """

    def __init__(self, key_parts: Mapping, n_rows: int | None, chunk_rows: int = 4096, namespace: str = "arrays",
                 root: Path | None = None, description: str = "") -> None:
        if (n_rows is not None and n_rows < 0) or chunk_rows < 1:
            raise ValueError("n_rows must be >= 0 and chunk_rows >= 1")
        self.key_parts = dict(key_parts)
        self.n_rows = n_rows
        self.chunk_rows = int(chunk_rows) if n_rows is not None else 0
        # the layout is part of the key: another chunking is another entry
        self.key = cache_key({"parts": self.key_parts, "n_rows": self.n_rows, "chunk_rows": self.chunk_rows})
        self.path = (root or cache_dir()) / namespace / self.key
        self.description = description
        self.chunks_computed = 0
        self.chunks_loaded = 0
        self._loaded: dict[int, dict[str, np.ndarray]] = {}
        self._exclusive = False

    @property
    def n_chunks(self) -> int:
        return 1 if self.n_rows is None else -(-self.n_rows // self.chunk_rows)

    def _chunk_path(self, index: int) -> Path:
        return self.path / f"chunk-{index:06d}.npz"

    def _chunk_size(self, index: int) -> int | None:
        if self.n_rows is None:
            return None
        return min(self.chunk_rows, self.n_rows - index * self.chunk_rows)

    @contextlib.contextmanager
    def locked(self, shared: bool = False) -> Iterator[None]:
        """Lock this entry across processes (released by the kernel if the process dies); exclusive, or
        ``shared`` by writers that each write chunks no other writes (torchrun workers), which still
        wait for, and hold off, an exclusive holder."""
        self.path.mkdir(parents=True, exist_ok=True)
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        with open(self.path.parent / f"{self.key}.lock", "a+b") as lock:
            try:
                fcntl.flock(lock, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                logger.info("waiting for another process computing cache entry %s", self.key[:12])
                fcntl.flock(lock, mode)
            self._exclusive = not shared
            try:
                if self._exclusive:  # leftovers of a writer that was killed; nobody else writes now
                    for stale in self.path.glob(".tmp-*"):
                        stale.unlink(missing_ok=True)
                if not (self.path / _META).exists():
                    meta = {"description": self.description, "n_rows": self.n_rows, "chunk_rows": self.chunk_rows,
                            "n_chunks": self.n_chunks, "created": time.time(), "key_parts": self.key_parts}
                    atomic_write_bytes(self.path / _META, json.dumps(meta, default=str).encode(), durable=True)
                yield
            finally:
                self._exclusive = False
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load_chunk(self, index: int) -> dict[str, np.ndarray] | None:
        """The chunk's arrays, or None when absent or failing its checksum (then deleted, with a warning)."""
        path = self._chunk_path(index)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        payload, digest = data[:-_DIGEST_BYTES], data[-_DIGEST_BYTES:]
        arrays = None
        if len(data) > _DIGEST_BYTES and hashlib.sha256(payload).digest() == digest:
            with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            size = self._chunk_size(index)
            if size is not None and any(len(array) != size for array in arrays.values()):
                arrays = None
        if arrays is None and self._exclusive:
            # only the exclusive holder deletes: otherwise a writer may be replacing this very file
            warnings.warn(f"cache chunk {path} failed its checksum; it is rebuilt", RuntimeWarning, stacklevel=3)
            path.unlink(missing_ok=True)
        return arrays

    def missing_chunks(self) -> list[int]:
        """Indices of the chunks not (validly) cached; the valid ones are kept in memory for ``read``."""
        missing = []
        for index in range(self.n_chunks):
            if index not in self._loaded:
                arrays = self._load_chunk(index)
                if arrays is None:
                    missing.append(index)
                else:
                    self._loaded[index] = arrays
                    self.chunks_loaded += 1
        return missing

    def missing_rows(self) -> np.ndarray:
        """Row indices (ascending) of the chunks ``fill`` has to compute."""
        return self.rows_of(self.missing_chunks())

    def rows_of(self, chunks: Iterable[int]) -> np.ndarray:
        """Row indices of ``chunks`` (ascending indices), in order."""
        assert self.n_rows is not None, "single-chunk stores have no row index"
        ranges = [np.arange(i * self.chunk_rows, i * self.chunk_rows + self._chunk_size(i)) for i in chunks]
        return np.concatenate(ranges) if ranges else np.zeros(0, dtype=np.int64)

    def write_chunk(self, index: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Store chunk ``index`` atomically, its checksum appended."""
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        payload = buffer.getvalue()
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self._chunk_path(index), payload + hashlib.sha256(payload).digest(), durable=True)
        self._loaded[index] = {name: np.asarray(array) for name, array in arrays.items()}
        self.chunks_computed += 1

    def fill(self, batches: Iterable[Mapping[str, np.ndarray]], chunks: Iterable[int] | None = None) -> None:
        """Compute the missing chunks from ``batches``: the rows of ``missing_rows()``, in order, in any sizes.

        ``chunks``: only these (ascending) chunks, from the rows of ``rows_of(chunks)``; a worker's
        share of the missing ones. Each chunk is written as soon as its rows are complete, so an
        interruption loses at most one chunk.
        """
        pending = self.missing_chunks() if chunks is None else list(chunks)
        merged: dict[str, np.ndarray] = {}
        for batch in batches:
            merged = {name: np.concatenate([merged[name], array]) if merged else np.asarray(array)
                      for name, array in batch.items()}
            while pending and len(next(iter(merged.values()))) >= self._chunk_size(pending[0]):
                size = self._chunk_size(pending[0])
                self.write_chunk(pending.pop(0), {name: array[:size] for name, array in merged.items()})
                merged = {name: array[size:] for name, array in merged.items()}
        if pending:
            raise RuntimeError(f"cache fill ended with {len(pending)} chunk(s) of {self.key[:12]} not computed")

    def read(self) -> dict[str, np.ndarray]:
        """All rows, concatenated over chunks; raises when chunks are still missing."""
        if self.missing_chunks():
            raise RuntimeError(f"cache entry {self.key[:12]} is incomplete")
        if self.n_rows == 0:
            return {}
        names = self._loaded[0].keys()
        return {name: np.concatenate([self._loaded[i][name] for i in range(self.n_chunks)]) for name in names}


def cached_arrays(key_parts: Mapping, compute_fn: Callable[[], Mapping[str, np.ndarray]], *,
                  namespace: str = "arrays", description: str = "") -> dict[str, np.ndarray]:
    """Named arrays (e.g. a bank of strings), computed once by ``compute_fn``, then read from the cache."""
    store = ChunkedStore(key_parts, None, namespace=namespace, description=description)
    if not store.missing_chunks():  # fast path, no lock: chunk files are only ever replaced whole
        return store.read()
    with store.locked():
        if store.missing_chunks():
            store.write_chunk(0, compute_fn())
        return store.read()


def cached_array(key_parts: Mapping, compute_fn: Callable[[], np.ndarray], *, namespace: str = "arrays",
                 description: str = "") -> np.ndarray:
    """One array (e.g. a 2-D projection), computed once by ``compute_fn``, then read from the cache."""
    return cached_arrays(key_parts, lambda: {"array": compute_fn()}, namespace=namespace,
                         description=description)["array"]


@dataclass
class CacheEntry:
    """One cache entry as listed by ``list_entries``."""

    namespace: str
    key: str
    path: Path
    description: str
    n_chunks_done: int
    n_chunks_total: int
    size_bytes: int
    modified: float

    @property
    def complete(self) -> bool:
        return self.n_chunks_done >= self.n_chunks_total


def list_entries(root: Path | None = None) -> list[CacheEntry]:
    """Every entry under the cache root, newest first, with its size and how many chunks are done."""
    root = root or cache_dir()
    entries = []
    for meta_path in root.glob(f"*/*/{_META}"):
        folder = meta_path.parent
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {}
        files = [f for f in folder.iterdir() if f.is_file()]
        chunks = [f for f in files if f.name.startswith("chunk-")]
        entries.append(CacheEntry(
            namespace=folder.parent.name, key=folder.name, path=folder, description=meta.get("description", ""),
            n_chunks_done=len(chunks), n_chunks_total=meta.get("n_chunks", len(chunks)), size_bytes=sum(f.stat().st_size for f in files),
            modified=max((f.stat().st_mtime for f in files), default=0.0)))
    return sorted(entries, key=lambda entry: entry.modified, reverse=True)


def clear_cache(root: Path | None = None) -> int:
    """Delete every entry under the cache root; returns the bytes freed."""
    freed = 0
    for entry in list_entries(root):
        with contextlib.suppress(OSError):
            freed += entry.size_bytes
            shutil.rmtree(entry.path)
            (entry.path.parent / f"{entry.key}.lock").unlink(missing_ok=True)
    return freed


def require_writable(root: Path | None = None) -> Path:
    """The cache root, created; a one-line error when it cannot be written."""
    root = root or cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=root, prefix=".tmp-probe-")
        probe.close()
    except OSError as error:
        raise CaeError(f"cannot write the cache folder {root} ({error.strerror}); set CAE_CACHE_DIR "
                       "to a writable folder") from None
    return root
