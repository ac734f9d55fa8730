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
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.shape != (n,):
                raise CaeError(f"labels has shape {labels.shape} but image_embeddings has {n} rows")
            if not np.issubdtype(labels.dtype, np.integer):
                if not np.issubdtype(labels.dtype, np.floating) or not np.all(np.isfinite(labels)) \
                        or np.any(labels != np.round(labels)):
                    raise CaeError("labels must be integers (-1 for unknown)")
            self.labels = labels.astype(np.int64)
        for name in ("noun_glosses", "noun_synsets"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _strings(value, name, len(self.noun_embeddings), "noun_embeddings"))
        if self.class_names is not None:
            self.class_names = np.asarray(self.class_names).astype(str)
        if self.caption_image_ids is not None:
            self.caption_image_ids = _strings(self.caption_image_ids, "caption_image_ids", len(self.caption_embeddings),
                                              "caption_embeddings")

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
    if not np.issubdtype(array.dtype, np.number):
        raise CaeError(f"{name} must be numeric, got dtype {array.dtype}")
    if d is not None and array.shape[1] != d:
        raise CaeError(f"{name} has dimension {array.shape[1]} but image_embeddings has {d}")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise CaeError(f"{name} contains NaN or infinite values")
    if np.any(~array.any(axis=1)):
        raise CaeError(f"{name} has an all-zero row, which has no direction")
    # rows already unit to float32 precision are kept as they are: normalising them again moves them by
    # an ulp, and a saved bundle must load bit-identical (near-tied results would otherwise flip)
    norms = np.linalg.norm(array, axis=1)
    off = np.abs(norms - 1) > 1e-6
    array[off] /= norms[off, None]
    return array


def _strings(value, name: str, n: int, against: str) -> np.ndarray:
    array = np.asarray(value).astype(str)
    if array.shape != (n,):
        raise CaeError(f"{name} has {array.shape[0] if array.ndim else 0} entries but {against} has {n} rows")
    return array


def load_bundle(path: str | os.PathLike) -> FeaturesBundle:
    """Read and validate a features bundle; every problem is a one-line ``CaeError``."""
    path = Path(path)
    if not path.is_file():
        raise CaeError(f"features bundle not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as exc:  # zip/npy format errors come in many types
        raise CaeError(f"{path} is not a readable .npz features bundle ({exc.__class__.__name__}: {exc})") from None
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise CaeError(f"{path} lacks the key(s) {', '.join(missing)}")
    metadata = {}
    if "meta_json" in arrays:
        try:
            metadata = json.loads(str(arrays["meta_json"]))
        except ValueError:
            raise CaeError(f"{path}: meta_json is not valid JSON") from None
    kwargs = {key: arrays[key] for key in REQUIRED_KEYS + OPTIONAL_KEYS if key in arrays}
    return FeaturesBundle(**kwargs, metadata=metadata)


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
