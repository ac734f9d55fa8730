"""Image data sources: folders, zip archives and torchvision benchmarks, listed as files.

A source is a list of image files with optional labels. Listing is cheap (no decoding);
bad files are found by :func:`load_image` (raises :class:`ImageLoadError`) or up front by
:func:`validate_images`, and are reported in ``ImageSource.skipped`` with a reason.

Specs that :func:`open_image_source` accepts, in this order of precedence:

- the name of an image set under ``$CAE_DATA_DIR/images`` (see :func:`dataset_choices`);
- the name of a torchvision benchmark (see :data:`BENCHMARKS`);
- a folder in ImageFolder layout (one subfolder per class) or a flat folder (no labels);
- a ``.zip`` archive of either.

A local folder that shares a name with the first two is reached as ``./name``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import config
from ..arrays import round_robin
from ..errors import CaeError
from .archives import content_root, file_digest, is_clutter, safe_extract_zip, safe_name
from .cache import cache_dir
from .torchvision_sets import BENCHMARKS, materialise_benchmark

IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".avif", ".jp2", ".j2k", ".qoi", ".pcx", ".sgi",
})
CLASS_NAMES_FILE = "classes.tsv"
# Seed of the stratified --limit subset, fixed so that a limit names the same images every time.
_LIMIT_SEED = 0



@dataclass
class ImageRecord:
    """One image file; ``image_id`` is its path relative to the source root (posix), ``label`` -1 if unknown."""

    path: Path
    image_id: str
    label: int = -1


@dataclass
class SkippedFile:
    """A file left out of a source, with the reason shown to the user."""

    image_id: str
    reason: str


@dataclass
class ImageSource:
    """Image files of one data source; ``class_names[label]`` names a label (None when unlabelled)."""

    name: str
    root: Path
    records: list[ImageRecord]
    class_names: list[str] | None = None
    skipped: list[SkippedFile] = field(default_factory=list)

    @property
    def labels(self) -> np.ndarray | None:
        """(N,) int64 labels of the records, or None for an unlabelled source."""
        if self.class_names is None:
            return None
        return np.array([record.label for record in self.records], dtype=np.int64)


class ImageLoadError(CaeError):
    """An image file that cannot be decoded; ``reason`` is the short text for the skipped-files table."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot load image {path}: {reason}")
        self.path = path
        self.reason = reason



# --------------------------------------------------------------------------- data folder, allowed roots


def default_work_dir() -> Path:
    """Where archives are extracted and benchmarks materialised: ``sources/`` in the cache root."""
    return cache_dir() / "sources"


def dataset_choices(data_dir: Path | None = None) -> dict[str, Path]:
    """The image sets found under ``<data_dir>/images`` (default :func:`cae_core.config.data_dir`), by folder name."""
    images = Path(data_dir if data_dir is not None else config.data_dir()) / "images"
    if not images.is_dir():
        return {}
    return {path.name: path for path in sorted(images.iterdir()) if path.is_dir() and not is_clutter(path.name)}


def allowed_roots() -> list[Path]:
    """Folders the app may read: the data folder plus ``$CAE_ALLOWED_ROOTS`` (``os.pathsep``-separated)."""
    extra = os.environ.get("CAE_ALLOWED_ROOTS", "").split(os.pathsep)
    roots = [config.data_dir()] + [Path(entry).expanduser() for entry in extra if entry.strip()]
    return list(dict.fromkeys(root.resolve() for root in roots))


def resolve_allowed_path(path: str | Path, allowed_roots: Sequence[Path]) -> Path:
    """The existing path ``path`` with symlinks resolved, provided it lies inside one of ``allowed_roots``.

    A relative path is taken relative to each root in turn. ``..`` components and symlinks are
    resolved before the check, so neither can lead out of the roots.

    Raises
    ------
    CaeError
        When the path lies outside every root, or does not exist inside one.
    """
    roots = [Path(root).resolve() for root in allowed_roots]
    requested = Path(path).expanduser()
    candidates = [requested] if requested.is_absolute() else [root / requested for root in roots]
    inside = [resolved for resolved in (candidate.resolve() for candidate in candidates)
              if any(resolved.is_relative_to(root) for root in roots)]
    for resolved in inside:
        if resolved.exists():
            return resolved
    if inside:
        raise CaeError(f"no such file or folder: {path}")
    listed = ", ".join(str(root) for root in roots) or "none configured"
    raise CaeError(f"refused to read {path}: only folders inside the allowed roots can be read ({listed}); "
                   "the operator can add roots with CAE_ALLOWED_ROOTS")


# --------------------------------------------------------------------------- opening a source


def open_image_source(spec: str, *, limit: int | None = None, allowed_roots: Sequence[Path] | None = None,
                      work_dir: Path | None = None) -> ImageSource:
    """List the images of a folder, a zip archive, a shared image set or a torchvision benchmark.

    Parameters
    ----------
    spec : str
        See the module docstring for what it may name.
    limit : int, optional
        Keep at most this many images: a deterministic subset, balanced across classes.
    allowed_roots : sequence of Path, optional
        When given, a path spec must lie inside one of these folders (see :func:`resolve_allowed_path`).
    work_dir : Path, optional
        Where archives are extracted and benchmarks written; default :func:`default_work_dir`.

    Returns
    -------
    ImageSource
        Records in folder order (names sorted, folder by folder); files are not decoded yet
        (see :func:`validate_images`).

    Raises
    ------
    CaeError
        For a missing or refused path, an unsafe or oversized archive, a benchmark that cannot be
        downloaded, or a source without any image.
    """
    if limit is not None and limit < 1:
        raise CaeError(f"the image limit must be a positive number, got {limit}")
    work_dir = Path(work_dir) if work_dir is not None else default_work_dir()
    spec = str(spec).strip()
    if not spec:
        raise CaeError("no image source given; name a folder of images, a .zip of one, a shared image set "
                       "or a torchvision benchmark")
    shared = dataset_choices()
    if spec in shared:
        path = shared[spec]
    elif spec.lower() in BENCHMARKS:
        example = next(iter(shared.values()), "a folder with one subfolder of images per class")
        return _limited(_open_folder(materialise_benchmark(spec.lower(), work_dir, str(example)), spec.lower()),
                        limit)
    else:
        path = Path(spec).expanduser()
    if allowed_roots is not None:
        path = resolve_allowed_path(path, allowed_roots)
    elif not path.exists():
        raise CaeError(f"no such folder or archive: {spec}; give a folder of images, a .zip of one, "
                       f"a shared image set ({', '.join(shared) or 'none found'}) "
                       f"or a torchvision benchmark ({', '.join(BENCHMARKS)})")
    path = path.resolve()
    if path.is_dir():
        source = _open_folder(path, path.name)
    elif path.suffix.lower() == ".zip":
        extracted = safe_extract_zip(path, work_dir / "archives" / f"{safe_name(path.stem)}-{file_digest(path)}")
        source = _open_folder(content_root(extracted), path.stem)
    else:
        raise CaeError(f"{spec} is neither a folder nor a .zip archive of images")
    return _limited(source, limit)


def _open_folder(root: Path, name: str) -> ImageSource:
    """List ``root`` as ImageFolder (only subfolders at the top) or as a flat folder (images at the top)."""
    root = root.resolve()  # symlink targets are compared with the resolved root
    skipped: list[SkippedFile] = []
    seen = {root}
    top = _entries(root, root, skipped)
    if any(not is_dir for _, is_dir in top) or not top:
        files = _expand(top, root, skipped, seen)
        records = [ImageRecord(path, _image_id(path, root), -1) for path in files]
        class_names = None
    else:
        records, folders = [], []
        for folder, _ in top:
            files = _scan(folder, root, skipped, seen)
            if files:  # a folder without images is not a class
                records += [ImageRecord(path, _image_id(path, root), len(folders)) for path in files]
                folders.append(folder.name)
        display = _read_class_names(root / CLASS_NAMES_FILE)
        class_names = [display.get(folder, folder) for folder in folders]
    if not records:
        found = f" ({len(skipped)} files skipped)" if skipped else ""
        raise CaeError(f"no images found in {name}{found}; expected image files "
                       "(.jpg, .png, …) in the folder or in one subfolder per class")
    return ImageSource(name=name, root=root, records=records, class_names=class_names, skipped=skipped)


def _entries(directory: Path, root: Path, skipped: list[SkippedFile]) -> list[tuple[Path, bool]]:
    """Visible children of ``directory`` that are folders or image files, sorted by name, as (path, is_dir).

    Symlinks are followed only when they resolve inside ``root``; others are reported as skipped.
    """
    try:
        with os.scandir(directory) as scan:
            children = sorted(scan, key=lambda entry: entry.name)
    except OSError as error:
        skipped.append(SkippedFile(_image_id(directory, root), f"unreadable folder: {error.strerror or error}"))
        return []
    entries = []
    for child in children:
        if is_clutter(child.name):
            continue
        path = Path(child.path)
        is_dir = child.is_dir()  # follows links; the target is checked just below
        if not is_dir and path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if child.is_symlink() and not path.resolve().is_relative_to(root):
            skipped.append(SkippedFile(_image_id(path, root), "symlink outside source"))
            continue
        entries.append((path, is_dir))
    return entries


def _scan(directory: Path, root: Path, skipped: list[SkippedFile], seen: set[Path]) -> list[Path]:
    """Image files under ``directory``, recursively, in sorted order; ``seen`` stops symlink cycles."""
    real = directory.resolve()
    if real in seen:
        return []
    seen.add(real)
    return _expand(_entries(directory, root, skipped), root, skipped, seen)


def _expand(entries: list[tuple[Path, bool]], root: Path, skipped: list[SkippedFile], seen: set[Path]) -> list[Path]:
    """The image files among ``entries`` and, recursively, inside its folders."""
    files = []
    for path, is_dir in entries:
        files += _scan(path, root, skipped, seen) if is_dir else [path]
    return files


def _image_id(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _read_class_names(path: Path) -> dict[str, str]:
    """``classes.tsv`` (``id<TAB>name, synonym, …``) as id → first name; empty when absent."""
    if not path.is_file():
        return {}
    names = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, tab, value = line.partition("\t")
        if tab and value.strip():
            names[key.strip()] = value.split(",")[0].strip()
    return names


def _limited(source: ImageSource, limit: int | None) -> ImageSource:
    """At most ``limit`` records: a seeded round-robin over classes, so every class is represented."""
    if limit is None or limit >= len(source.records):
        return source
    labels = np.array([record.label for record in source.records])
    kept = np.sort(round_robin(labels, limit, np.random.default_rng(_LIMIT_SEED)))
    return replace(source, records=[source.records[index] for index in kept])


