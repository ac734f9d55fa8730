"""Atomic file and folder writing: the one place the engine and the explorer write files.

A reader (another process, a crashed run's successor) sees no file or a whole one, never half of one:
everything is written beside its destination under a temporary name, then renamed over it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: files get the usual mode (0644 under umask 022), not mkstemp's 0600


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on success it replaces ``path``.

    The temporary name ends with ``suffix`` (default: ``path``'s), for writers that insist on one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{suffix}")
    os.close(handle)
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, payload: bytes, *, durable: bool = False) -> Path:
    """Write ``payload`` to ``path`` atomically; ``durable`` also flushes it to disk before the rename
    (the cache's chunks, which a resumed run trusts)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as stream:
            stream.write(payload)
            if durable:
                stream.flush()
                os.fsync(stream.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


PARTIAL_SUFFIX = ".partial"  # a folder being written by atomic_folder (its name also starts with a dot)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_folder(dest: str | os.PathLike, fill: Callable[[Path], Any], *, durable: bool = False) -> Path:
    """Create the folder ``dest`` by ``fill(temporary folder)`` then a rename, so it is never seen
    half-written. If another process finished the same folder first, its folder is kept.

    ``durable`` flushes every file and the folder to disk before the rename, and the rename after it
    (the run store's records, which must survive a power cut whole or not at all)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=PARTIAL_SUFFIX, dir=dest.parent))
    os.chmod(partial, 0o777 & ~_UMASK)  # the usual mode, not mkdtemp's 0700
    try:
        fill(partial)
        if durable:
            for path in partial.rglob("*"):
                _fsync(path)
            _fsync(partial)
        try:
            partial.rename(dest)
        except OSError:
            if not dest.is_dir():
                raise
        if durable:
            _fsync(dest.parent)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return dest
