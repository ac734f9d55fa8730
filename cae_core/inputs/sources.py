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

import functools
import hashlib
import os
import pickle
import re
import warnings
from dataclasses import dataclass, field, replace
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Sequence
from zipfile import BadZipFile, ZipFile

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .cache import cache_dir
from .. import config
from ..errors import CaeError
from ..files import atomic_folder
from ..progress import Progress, no_progress

#: Extensions listed as images. Files with other extensions are ignored silently.
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".avif", ".jp2", ".j2k", ".qoi", ".pcx", ".sgi",
})
# Folders that archivers and desktops add next to the images (hidden names are skipped too).
_IGNORED_NAMES = frozenset({"__MACOSX"})
CLASS_NAMES_FILE = "classes.tsv"
DEFAULT_MAX_ARCHIVE_BYTES = 4 * 2**30
DEFAULT_MAX_ARCHIVE_FILES = 200_000
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
    return {path.name: path for path in sorted(images.iterdir()) if path.is_dir() and not _is_ignored(path.name)}


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
        return _limited(_open_benchmark(spec.lower(), work_dir), limit)
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
        extracted = safe_extract_zip(path, work_dir / "archives" / f"{_safe_name(path.stem)}-{_file_digest(path)}")
        source = _open_folder(_content_root(extracted), path.stem)
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
        if _is_ignored(child.name):
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


def _is_ignored(name: str) -> bool:
    return name.startswith(".") or name in _IGNORED_NAMES


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
    rng = np.random.default_rng(_LIMIT_SEED)
    labels = np.array([record.label for record in source.records])
    # Rank each record within its class in a seeded order; taking the lowest ranks first is a round-robin.
    rank = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank[rng.permutation(members)] = np.arange(len(members))
    order = np.lexsort((rng.random(len(labels)), rank))
    kept = np.sort(order[:limit])
    return replace(source, records=[source.records[index] for index in kept])


# --------------------------------------------------------------------------- decoding


def load_image(path: Path) -> Image.Image:
    """Decode an image file fully and return it as RGB.

    Greyscale, CMYK, palette, 16-bit and transparent images are converted (transparency onto
    white); EXIF orientation is applied. Pillow's decompression-bomb limit stays on and its
    warning counts as an error; truncated files are not patched up.

    Raises
    ------
    ImageLoadError
        With a short ``reason`` such as "empty file", "decompression bomb" or "truncated or corrupt".
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                return _to_rgb(ImageOps.exif_transpose(image))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageLoadError(path, "decompression bomb") from None
    except UnidentifiedImageError:
        reason = "empty file" if path.stat().st_size == 0 else "not an image or an unsupported format"
        raise ImageLoadError(path, reason) from None
    except PermissionError:
        raise ImageLoadError(path, "permission denied") from None
    except FileNotFoundError:
        raise ImageLoadError(path, "file not found") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # Pillow reports damaged data through all of these, e.g. OSError "image file is truncated".
        raise ImageLoadError(path, f"truncated or corrupt ({error})") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of a decoded image of any mode."""
    if image.mode == "F" or image.mode.startswith("I"):
        # Wide greyscale: convert() clips values to 255 instead of rescaling them.
        values = np.asarray(image, dtype=np.float64)
        top = values.max() if image.mode == "F" else 65535.0
        image = Image.fromarray(np.clip(values * (255.0 / (top or 1.0)), 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")


def validate_images(source: ImageSource,
                    progress: Progress | None = None) -> ImageSource:
    """Decode every image once and move those that fail from ``records`` to ``skipped``.

    ``progress(stage, fraction, message)`` is called as the check advances.
    """
    report = progress or no_progress
    total = len(source.records)
    good, bad = [], []
    step = max(1, total // 100)
    report("checking images", 0.0, f"checking {total} images")
    for index, record in enumerate(source.records, start=1):
        try:
            load_image(record.path)
            good.append(record)
        except ImageLoadError as error:
            bad.append(SkippedFile(record.image_id, error.reason))
        if index % step == 0 or index == total:
            report("checking images", index / total, f"{index}/{total} images checked")
    return replace(source, records=good, skipped=source.skipped + bad)


# --------------------------------------------------------------------------- archives


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
                if _escapes(member.filename):
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


def _escapes(name: str) -> bool:
    """Whether a zip entry name is absolute or climbs out with ``..`` (either slash style)."""
    posix = name.replace("\\", "/")
    return posix.startswith("/") or re.match(r"^[A-Za-z]:", posix) is not None or ".." in PurePosixPath(posix).parts


def _content_root(folder: Path) -> Path:
    """The folder itself, or its only subfolder when the archive wrapped everything in one."""
    children = [child for child in folder.iterdir() if not _is_ignored(child.name)]
    if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
        return children[0]
    return folder


def _file_digest(path: Path) -> str:
    """First 16 hex digits of the file's SHA-256: the same archive content reuses one extraction."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(functools.partial(stream.read, 2**20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


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


def _safe_name(name: str) -> str:
    """A folder name made of the text of ``name`` (no separators, not hidden)."""
    return re.sub(r"[\\/:\0]", "_", name).lstrip(".") or "_"


# --------------------------------------------------------------------------- torchvision benchmarks


@dataclass(frozen=True)
class Benchmark:
    """A torchvision dataset: ``load(download_root)`` returns (dataset, class names, labels or None).

    ``labels`` overrides the labels of the dataset's ``(image, label)`` items when given.
    """

    description: str
    load: Callable[[Path], tuple[Sequence, list[str], Sequence[int] | None]]


def _torchvision_set(class_name: str, **options: Any) -> Callable[[Path], tuple[Sequence, list[str], None]]:
    def load(root: Path) -> tuple[Sequence, list[str], None]:
        import torchvision.datasets

        dataset = getattr(torchvision.datasets, class_name)(str(root), download=True, **options)
        return dataset, list(dataset.classes), None
    return load


def _load_cifar20(root: Path) -> tuple[Sequence, list[str], list[int]]:
    """CIFAR-100 test set labelled by its 20 superclasses, which torchvision reads but does not expose."""
    dataset, _, _ = _torchvision_set("CIFAR100", train=False)(root)
    folder = Path(dataset.root) / dataset.base_folder
    # The files were checked against their published MD5 by torchvision before this reads them.
    with open(folder / dataset.test_list[0][0], "rb") as stream:
        labels = pickle.load(stream, encoding="latin1")["coarse_labels"]
    with open(folder / dataset.meta["filename"], "rb") as stream:
        names = pickle.load(stream, encoding="latin1")["coarse_label_names"]
    return dataset, names, labels


#: Benchmarks that :func:`open_image_source` downloads through torchvision (evaluation splits).
BENCHMARKS: dict[str, Benchmark] = {
    "cifar10": Benchmark("CIFAR-10 test set, 10,000 images, 10 classes", _torchvision_set("CIFAR10", train=False)),
    "cifar100": Benchmark("CIFAR-100 test set, 10,000 images, 100 classes",
                          _torchvision_set("CIFAR100", train=False)),
    "cifar20": Benchmark("CIFAR-100 test set labelled by its 20 superclasses", _load_cifar20),
    "stl10": Benchmark("STL-10 test set, 8,000 images, 10 classes", _torchvision_set("STL10", split="test")),
    "dtd": Benchmark("Describable Textures test split 1, 1,880 images, 47 classes",
                     _torchvision_set("DTD", split="test", partition=1)),
}


def _open_benchmark(name: str, work_dir: Path) -> ImageSource:
    """Download (once) and write a benchmark as an ImageFolder of PNG files under ``work_dir``."""
    folder = work_dir / "benchmarks" / name
    if not folder.is_dir():
        try:
            dataset, class_names, labels = BENCHMARKS[name].load(work_dir / "downloads")
        except (OSError, RuntimeError, HTTPException) as error:
            shared = dataset_choices()
            example = next(iter(shared.values()), "a folder with one subfolder of images per class")
            raise CaeError(f"cannot download the torchvision benchmark {name!r} ({error}); without internet, "
                           f"point --images at a folder of images instead, e.g. {example}") from None
        atomic_folder(folder, functools.partial(_write_image_folder, dataset, class_names, labels))
    return _open_folder(folder, name)


def _write_image_folder(dataset: Sequence, class_names: list[str], labels: Sequence[int] | None,
                        folder: Path) -> None:
    """Save ``(image, label)`` items as ``<class name>/<rank in class>.png``."""
    class_folders = [folder / _safe_name(class_name) for class_name in class_names]
    for class_folder in class_folders:
        class_folder.mkdir()
    counts = [0] * len(class_names)
    for index in range(len(dataset)):
        image, label = dataset[index]
        label = int(labels[index] if labels is not None else label)
        image.save(class_folders[label] / f"{counts[label]:05d}.png")
        counts[label] += 1
