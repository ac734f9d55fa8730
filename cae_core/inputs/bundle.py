"""The features bundle: the engine's input format (an ``.npz`` file).

Keys (exactly these; ``meta_*`` keys carry free-form provenance and are optional):

- ``image_embeddings``  (N, d) float
- ``labels``            (N,) int, optional; -1 means unknown
- ``image_ids``         (N,) str, optional
- ``class_names``       (n_classes,) str, optional; ``class_names[label]`` names a label
- ``noun_embeddings``   (M, d) float, with ``nouns`` (M,) str
- ``caption_embeddings`` (C, d) float, with ``captions`` (C,) str
- ``noun_glosses``, ``noun_synsets`` (M,) str, optional (WordNet senses for the explorer)
- ``caption_image_ids`` (C,) str, optional: the image each caption describes (SAC's per-image captions)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CaeError
from ..files import atomic_path

REQUIRED_KEYS = ("image_embeddings", "noun_embeddings", "nouns", "caption_embeddings", "captions")
OPTIONAL_KEYS = ("labels", "image_ids", "class_names", "noun_glosses", "noun_synsets", "caption_image_ids")


@dataclass
class FeaturesBundle:
    """Embeddings of images and of the two text banks, L2-normalised on construction.

    Shapes: ``image_embeddings`` (N, d), ``noun_embeddings`` (M, d),
    ``caption_embeddings`` (C, d); ``labels`` (N,) or None.
    """

    image_embeddings: np.ndarray
    noun_embeddings: np.ndarray
    nouns: np.ndarray
    caption_embeddings: np.ndarray
    captions: np.ndarray
    labels: np.ndarray | None = None
    image_ids: np.ndarray | None = None
    class_names: np.ndarray | None = None
    noun_glosses: np.ndarray | None = None
    noun_synsets: np.ndarray | None = None
    caption_image_ids: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.image_embeddings = _embedding_matrix(self.image_embeddings, "image_embeddings")
        d = self.image_embeddings.shape[1]
        self.noun_embeddings = _embedding_matrix(self.noun_embeddings, "noun_embeddings", d)
        self.caption_embeddings = _embedding_matrix(self.caption_embeddings, "caption_embeddings", d)
        self.nouns = _strings(self.nouns, "nouns", len(self.noun_embeddings), "noun_embeddings")
        self.captions = _strings(self.captions, "captions", len(self.caption_embeddings), "caption_embeddings")
        n = len(self.image_embeddings)
        if self.image_ids is None:
            self.image_ids = np.array([str(i) for i in range(n)])
        self.image_ids = _strings(self.image_ids, "image_ids", n, "image_embeddings")
        _check_unique(self.image_ids, "image_ids")
        for name in ("noun_glosses", "noun_synsets"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _strings(value, name, len(self.noun_embeddings), "noun_embeddings"))
        if self.class_names is not None:
            self.class_names = np.asarray(self.class_names).astype(str)
            if self.class_names.ndim != 1:
                raise CaeError(f"class_names must be a 1-D array of names, got shape {self.class_names.shape}")
        if self.labels is not None:
            self.labels = _labels(self.labels, n, self.class_names)
        if self.caption_image_ids is not None:
            self.caption_image_ids = _strings(self.caption_image_ids, "caption_image_ids", len(self.caption_embeddings),
                                              "caption_embeddings")
        if not isinstance(self.metadata, dict):
            raise CaeError(f"the metadata must be a JSON object (a dict), got {type(self.metadata).__name__}")

    @property
    def per_image_captions(self) -> bool:
        """Whether the captions are the images' own (each tied to one image), as SAC's are."""
        return self.caption_image_ids is not None

    def captions_of(self, image: int) -> np.ndarray:
        """Rows of the caption bank that describe image ``image`` (empty for a general caption bank)."""
        if self.caption_image_ids is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.caption_image_ids == self.image_ids[image])

    @property
    def n_images(self) -> int:
        return len(self.image_embeddings)

    @property
    def has_labels(self) -> bool:
        return self.labels is not None and bool(np.any(self.labels >= 0))

    def label_name(self, label: int) -> str:
        """Human name of a ground-truth label (its number when no names are known)."""
        if label < 0:
            return ""
        if self.class_names is not None and label < len(self.class_names):
            return str(self.class_names[label])
        return str(label)

    def subset(self, index: np.ndarray) -> "FeaturesBundle":
        """The bundle restricted to the images at ``index`` (text banks unchanged)."""
        return FeaturesBundle(
            image_embeddings=self.image_embeddings[index],
            noun_embeddings=self.noun_embeddings, nouns=self.nouns,
            caption_embeddings=self.caption_embeddings, captions=self.captions,
            labels=None if self.labels is None else self.labels[index],
            image_ids=self.image_ids[index], class_names=self.class_names,
            noun_glosses=self.noun_glosses, noun_synsets=self.noun_synsets,
            caption_image_ids=self.caption_image_ids, metadata=dict(self.metadata),
        )


def _embedding_matrix(value, name: str, d: int | None = None) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 2:
        raise CaeError(f"{name} must be a 2-D array, got shape {array.shape}")
    if array.shape[0] == 0:
        raise CaeError(f"{name} is empty")
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        # complex numbers too: casting them to float would drop their imaginary part without a word
        raise CaeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if d is not None and array.shape[1] != d:
        raise CaeError(f"{name} has dimension {array.shape[1]} but image_embeddings has {d}")
    _check_rows(~np.isfinite(array).all(axis=1) if array.dtype.kind == "f" else None, name,
                "contains NaN or infinite values")
    with np.errstate(over="ignore"):
        array = array.astype(np.float32)
    _check_rows(~np.isfinite(array).all(axis=1), name, "has values beyond float32's range")
    _check_rows(~array.any(axis=1), name, "has an all-zero row, which has no direction")
    # rows already unit to float32 precision are kept as they are: normalising them again moves them by
    # an ulp, and a saved bundle must load bit-identical (near-tied results would otherwise flip)
    with np.errstate(over="ignore", under="ignore"):
        norms = np.linalg.norm(array, axis=1)
    # a row of tiny values squares to zero in float32, a row of huge ones to infinity: measure those in float64
    extreme = ~np.isfinite(norms) | (norms < np.finfo(np.float32).tiny ** 0.5)
    norms[extreme] = np.linalg.norm(array[extreme].astype(np.float64), axis=1)
    off = np.abs(norms - 1) > 1e-6
    array[off] = (array[off] / norms[off, None].astype(np.float64)).astype(np.float32)
    return array


def _check_rows(bad: np.ndarray | None, name: str, problem: str) -> None:
    """CaeError naming how many rows of ``name`` have ``problem`` and the first of them."""
    if bad is not None and bad.any():
        rows = np.flatnonzero(bad)
        raise CaeError(f"{name} {problem} ({len(rows)} row(s); the first is row {rows[0]})")


def _strings(value, name: str, n: int, against: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 1:
        raise CaeError(f"{name} must be a 1-D array of texts, got shape {array.shape}")
    if array.shape != (n,):
        raise CaeError(f"{name} has {array.shape[0]} entries but {against} has {n} rows")
    if array.dtype.kind not in "USO":
        raise CaeError(f"{name} must hold texts, got dtype {array.dtype}")
    return array.astype(str)


def _check_unique(ids: np.ndarray, name: str) -> None:
    """Image ids name one image each: captions and pictures are found by id."""
    unique, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if len(unique) < len(ids):
        repeated = unique[counts > 1][0]
        rows = np.flatnonzero(ids == repeated)
        raise CaeError(f"{name} repeats {str(repeated)!r} (rows {', '.join(map(str, rows[:5]))}); "
                       f"every image needs its own id")


def _labels(value, n: int, class_names: np.ndarray | None) -> np.ndarray:
    """(n,) int64 labels, each -1 (unknown) or a class index (below ``len(class_names)`` where named)."""
    labels = np.asarray(value)
    if labels.shape != (n,):
        raise CaeError(f"labels has shape {labels.shape} but image_embeddings has {n} rows")
    integral = np.issubdtype(labels.dtype, np.integer) or (
        np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)))
    if labels.dtype == bool or not integral:
        raise CaeError("labels must be integers (-1 for unknown)")
    # checked before the cast: a float or uint64 beyond int64 would wrap to a wrong class
    top = len(class_names) if class_names is not None else np.iinfo(np.int64).max
    bad = (labels < -1) | (labels >= top)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        allowed = f"-1..{top - 1} (class_names names {top} classes)" if class_names is not None else "-1 or above"
        raise CaeError(f"labels must be {allowed}; row {row} has {labels[row].item()!r}")
    return labels.astype(np.int64)


def load_bundle(path: str | os.PathLike) -> FeaturesBundle:
    """Read and validate a features bundle; every problem is a one-line ``CaeError``."""
    path = Path(path)
    if not path.is_file():
        raise CaeError(f"features bundle not found: {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:  # zip/npy format errors come in many types
        raise CaeError(f"{path} is not a readable .npz features bundle ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise CaeError(f"{path} is a single .npy array, not an .npz features bundle")
    with data:  # only the keys a bundle has: other members (free-form extras) are not read
        arrays = {key: _read_member(data, key, path) for key in data.files
                  if key in REQUIRED_KEYS + OPTIONAL_KEYS + ("meta_json",)}
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise CaeError(f"{path} lacks the key(s) {', '.join(missing)}")
    metadata = {}
    if "meta_json" in arrays:
        try:
            metadata = json.loads(str(arrays["meta_json"]))
        except ValueError:
            raise CaeError(f"{path}: meta_json is not valid JSON") from None
        if not isinstance(metadata, dict):
            raise CaeError(f"{path}: meta_json must be a JSON object, got {type(metadata).__name__}")
    kwargs = {key: arrays[key] for key in REQUIRED_KEYS + OPTIONAL_KEYS if key in arrays}
    return FeaturesBundle(**kwargs, metadata=metadata)


def _read_member(data, key: str, path: Path) -> np.ndarray:
    """One array of an .npz, its header checked first: an object (pickled) array is refused by name, and a
    shape that claims more bytes than the member holds (a damaged or hostile file) is refused before
    anything that size is allocated."""
    try:
        info = data.zip.getinfo(key + ".npy")
        with data.zip.open(info) as member:
            version = np.lib.format.read_magic(member)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)(member)
            shape, _, dtype = header
            available = info.file_size - member.tell()
        if dtype.hasobject:
            raise CaeError(f"{path}: {key} is an object array (stored with pickle), which a bundle may not hold; "
                           f"save numbers and str arrays")
        declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if declared > available:
            raise CaeError(f"{path}: {key} declares shape {tuple(shape)} ({declared:,} bytes) but holds "
                           f"{available:,} bytes; the file is damaged")
        return data[key]
    except CaeError:
        raise
    except Exception as exc:  # zip and npy format errors come in many types
        raise CaeError(f"{path}: {key} cannot be read ({exc.__class__.__name__}: {exc})") from None


def model_name(metadata: dict) -> str:
    """The CLIP model a bundle's metadata names ("unknown model" for a bundle made elsewhere)."""
    return str(metadata.get("model") or metadata.get("model_name") or "unknown model")


def has_random_weights(metadata: dict) -> bool:
    """Whether the metadata says the embeddings come from an untrained model: it names a model and no weights
    (``encode_dataset`` records ``pretrained`` None for random weights)."""
    return bool(metadata.get("model")) and metadata.get("pretrained") in (None, "", "random", "none", "None")


def image_root_of(metadata: dict, bundle_path: str | os.PathLike | None) -> Path | None:
    """The folder a bundle's ``image_ids`` are relative to, from its metadata's ``image_root``.

    A relative ``image_root`` is taken relative to the bundle file's folder, so that a bundle and its
    pictures can be moved together; None when the metadata names none (or it is relative and the
    bundle's location is unknown). The folder may not exist on this machine.
    """
    recorded = metadata.get("image_root")
    if not recorded:
        return None
    root = Path(str(recorded)).expanduser()
    if root.is_absolute():
        return root
    return Path(bundle_path).parent / root if bundle_path is not None else None


def save_bundle(bundle: FeaturesBundle, path: str | os.PathLike) -> Path:
    """Write ``bundle`` atomically (temporary file, then rename): no half-written bundle."""
    path = Path(path)
    arrays = {key: getattr(bundle, key) for key in REQUIRED_KEYS}
    for key in OPTIONAL_KEYS:
        if getattr(bundle, key) is not None:
            arrays[key] = getattr(bundle, key)
    arrays["image_embeddings"] = arrays["image_embeddings"].astype(np.float32)
    arrays["meta_json"] = np.array(json.dumps(bundle.metadata, sort_keys=True))
    with atomic_path(path, suffix=".npz") as tmp:  # numpy appends .npz to a name without it
        # compressed: fixed-width string arrays (146,347 glosses, 155,070 captions) are mostly padding
        np.savez_compressed(tmp, **arrays)
    return path
