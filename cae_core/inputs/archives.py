"""Zip archives of images, opened safely: nothing escapes the destination, sizes are capped, and an
extraction is never seen half-done."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from zipfile import BadZipFile, ZipFile

from ..errors import CaeError
from ..files import atomic_folder, file_sha256

DEFAULT_MAX_ARCHIVE_BYTES = 4 * 2**30
DEFAULT_MAX_ARCHIVE_FILES = 200_000
# Folders that archivers and desktops add next to the images (hidden names are skipped too).
CLUTTER_NAMES = frozenset({"__MACOSX"})


def is_clutter(name: str) -> bool:
    """A hidden file or a folder an archiver added (``__MACOSX``): never an image or a class."""
    return name.startswith(".") or name in CLUTTER_NAMES


def safe_extract_zip(archive: Path, dest: Path, max_total_bytes: int | None = None,
                     max_files: int | None = None) -> Path:
    """Extract a zip archive into the new folder ``dest`` and return ``dest``.

    Every entry is checked before anything is written: entries with ``..`` or absolute paths,
    encrypted entries, more than ``max_files`` files or more than ``max_total_bytes`` uncompressed
    refuse the whole archive. The files go to a temporary sibling folder that is renamed to
    ``dest`` at the end, so ``dest`` exists only when complete; an existing ``dest`` is returned as is.

    Parameters
    ----------
    max_total_bytes : int, optional
        Default ``$CAE_MAX_ARCHIVE_BYTES``, else 4 GiB.
    max_files : int, optional
        Default ``$CAE_MAX_ARCHIVE_FILES``, else 200,000.

    Raises
    ------
    CaeError
        For an invalid, unsafe or oversized archive.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.is_dir():
        return dest
    max_total_bytes = max_total_bytes if max_total_bytes is not None else _env_int(
        "CAE_MAX_ARCHIVE_BYTES", DEFAULT_MAX_ARCHIVE_BYTES)
    max_files = max_files if max_files is not None else _env_int("CAE_MAX_ARCHIVE_FILES", DEFAULT_MAX_ARCHIVE_FILES)
    try:
        with ZipFile(archive) as zipped:
            members = zipped.infolist()
            for member in members:
                if escapes(member.filename):
                    raise CaeError(f"refused archive {archive.name}: entry {member.filename!r} "
                                   "points outside the extraction folder")
                if member.flag_bits & 0x1:
                    raise CaeError(f"refused archive {archive.name}: entry {member.filename!r} is encrypted")
            files = [member for member in members if not member.is_dir()]
            total = sum(member.file_size for member in files)
            if len(files) > max_files:
                raise CaeError(f"archive {archive.name} holds {len(files)} files, more than the limit of "
                               f"{max_files} (CAE_MAX_ARCHIVE_FILES)")
            if total > max_total_bytes:
                raise CaeError(f"archive {archive.name} unpacks to {_size(total)}, more than the limit of "
                               f"{_size(max_total_bytes)} (CAE_MAX_ARCHIVE_BYTES)")
            return atomic_folder(dest, zipped.extractall)
    except BadZipFile as error:
        raise CaeError(f"cannot read the zip archive {archive.name}: it is damaged or not a zip archive ({error})") from None
    except NotImplementedError as error:  # e.g. a compression method that zipfile cannot read
        raise CaeError(f"cannot extract {archive.name}: {error}") from None
    except OSError as error:
        raise CaeError(f"cannot extract {archive.name}: {error}") from None


def escapes(name: str) -> bool:
    """Whether a zip entry name is absolute or climbs out with ``..`` (either slash style)."""
    posix = name.replace("\\", "/")
    return posix.startswith("/") or re.match(r"^[A-Za-z]:", posix) is not None or ".." in PurePosixPath(posix).parts


def content_root(folder: Path) -> Path:
    """The folder itself, or its only subfolder when the archive wrapped everything in one."""
    children = [child for child in folder.iterdir() if not is_clutter(child.name)]
    if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
        return children[0]
    return folder


def file_digest(path: Path) -> str:
    """First 16 hex digits of the file's SHA-256: the same archive content reuses one extraction."""
    return file_sha256(path)[:16]


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise CaeError(f"{name} must be a whole number, got {value!r}") from None


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.1f} MiB"


def safe_name(name: str) -> str:
    """A folder name made of the text of ``name`` (no separators, not hidden)."""
    return re.sub(r"[\\/:\0]", "_", name).lstrip(".") or "_"
