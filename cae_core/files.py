"""Atomic file and folder writing: the one place the engine and the explorer write files.

A reader (another process, a crashed run's successor) sees no file or a whole one, never half of one:
everything is written beside its destination under a temporary name, then renamed over it. A download
that may be resumed keeps its unfinished bytes under a fixed name instead (``partial_path``, ``publish``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import CaeError

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


def check_writable(path: str | os.PathLike, folder: bool, option: str = "--out") -> Path:
    """Make sure files can be written at ``path`` (a folder, or a file when not ``folder``) before any
    long work, leaving no trace: missing folders are made, a temporary file is written in the deepest, and
    all of them are removed again. Else a ``CaeError`` naming ``option`` and the path."""
    path = Path(path).expanduser().absolute()
    target = path if folder else path.parent
    if path.exists() and path.is_dir() != folder:
        raise CaeError(f"{option} {path} is {'a file' if folder else 'a folder'}; give "
                       f"{'a folder' if folder else 'a file name'} there")
    created = [parent for parent in (target, *target.parents) if not parent.exists()]
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as error:
        raise CaeError(f"cannot write {option} {path} ({error.strerror or error}); choose a folder you can "
                       "write to") from error
    finally:
        for folder_made in created:  # deepest first; the writer makes them again once there is something to write
            with contextlib.suppress(OSError):
                folder_made.rmdir()
    return path


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


def partial_path(path: str | os.PathLike) -> Path:
    """Where a resumable writer of ``path`` keeps its unfinished bytes: beside it under a fixed hidden name,
    so that a later attempt finds them (``atomic_path``'s temporary names die with the attempt)."""
    path = Path(path)
    return path.with_name(f".{path.name}.part")


def publish(partial: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Turn the finished ``partial`` into ``path`` in one rename: readers see no file or the whole one."""
    os.chmod(partial, 0o666 & ~_UMASK)
    os.replace(partial, path)
    return Path(path)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's content, hex, read in blocks of 1 MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(functools.partial(stream.read, 2**20), b""):
            digest.update(block)
    return digest.hexdigest()
