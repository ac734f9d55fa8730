"""Downloads checked against a recorded SHA-256: resumed after an interruption, never used unverified.

The bytes arrive in a partial file beside the destination (``files.partial_path``), locked so that two
processes fetching the same file take turns; only a complete file whose checksum matches is renamed to
its destination (``files.publish``). A file with the wrong checksum is deleted and refused. An interrupted
transfer keeps its partial file: the next attempt asks the server for the rest (an HTTP range) and starts
again from zero where the server does not honour ranges.
"""

from __future__ import annotations

import fcntl
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import CaeError
from ..files import file_sha256, partial_path, publish
from ..progress import Progress, no_progress

BLOCK_BYTES = 1 << 16
TIMEOUT_S = 30


def download(url: str, dest: str | os.PathLike, sha256: str, size: int, *, what: str, offline_hint: str,
             progress: Progress = no_progress, stage: str = "download") -> Path:
    """``dest``, fetched from ``url`` unless it is already there with the SHA-256 ``sha256``.

    ``size`` is the file's length in bytes (what the progress counts and what tells an interrupted transfer
    from a finished one); ``what`` names the file in messages and ``offline_hint`` is the way forward when
    the server cannot be reached. Raises ``CaeError`` with one line when the server cannot be reached, the
    transfer stops (the partial file is kept for the next attempt) or the checksum differs (the file is
    deleted).
    """
    dest = Path(dest)
    if len(sha256) != 64:
        raise CaeError(f"{what}: the recorded SHA-256 {sha256!r} is not 64 hex digits")
    if dest.is_file() and file_sha256(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(dest)
    while True:
        with open(part, "ab") as stream:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX)  # another process fetching it: wait for its result
            if dest.is_file() and file_sha256(dest) == sha256:  # that process finished it
                _discard_if_empty(stream, part)
                return dest
            if not _is_open_file(stream, part):  # the holder before us refused and deleted it: start anew
                continue
            try:
                _receive(url, stream, size, what, offline_hint, progress, stage)
            except CaeError:
                _discard_if_empty(stream, part)  # nothing to resume from: leave no trace
                raise
            digest = file_sha256(part)
            if digest != sha256:
                part.unlink()
                raise CaeError(f"refused {what} from {url}: its SHA-256 is {digest[:16]}…, not the recorded "
                               f"{sha256[:16]}… (the file was deleted; the source changed or the transfer was "
                               "altered)")
            return publish(part, dest)


def _discard_if_empty(stream, part: Path) -> None:
    if os.fstat(stream.fileno()).st_size == 0 and _is_open_file(stream, part):
        part.unlink(missing_ok=True)


def _is_open_file(stream, path: Path) -> bool:
    """Whether ``stream`` is still the file at ``path`` (not one a previous holder deleted or renamed)."""
    try:
        return os.stat(path).st_ino == os.fstat(stream.fileno()).st_ino
    except FileNotFoundError:
        return False


def _receive(url: str, stream, size: int, what: str, offline_hint: str, progress: Progress, stage: str) -> None:
    """Append the rest of ``url`` to ``stream`` (its bytes so far are the start of the file)."""
    done = os.fstat(stream.fileno()).st_size
    if done > size:  # not the start of this file: start again
        stream.truncate(0)
        done = 0
    if done == size:  # complete already (a previous attempt stopped before checking it)
        return
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        stream.truncate(0)  # e.g. 416 for a range past the end: whatever was kept, the next attempt starts anew
        raise CaeError(f"cannot download {what}: {url} answered {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise CaeError(f"cannot download {what} from {url} ({reason}); {offline_hint}") from None
    with response:
        if done and response.status != 206:  # the server sends the whole file again
            stream.truncate(0)
            done = 0
        try:
            while block := response.read(BLOCK_BYTES):
                stream.write(block)
                done += len(block)
                progress(stage, min(done / size, 1.0), f"{what}: {done / 2**20:.1f} of {size / 2**20:.1f} MiB")
        except (OSError, http.client.HTTPException) as error:
            stream.flush()
            raise CaeError(f"the download of {what} stopped after {done:,} of {size:,} bytes ({error!r}); "
                           "run it again to resume") from None
    stream.flush()
    os.fsync(stream.fileno())
    if done < size:
        raise CaeError(f"the download of {what} stopped after {done:,} of {size:,} bytes (the server closed the "
                       "connection); run it again to resume")
