"""Ready-made demos: every features bundle under ``<data_dir>/embeddings/``, those fetched from their public
sources into ``<cache>/demos/`` (``demo_sources.py``) and one planted (synthetic) set.

A demo is found without reading its embeddings (shapes come from the ``.npy`` headers inside the
``.npz``), so the home page can list large bundles at no cost.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import data_dir as default_data_dir
from ..errors import CaeError, quoted
from . import demo_sources
from .bundle import FeaturesBundle, image_root_of, load_bundle, model_name
from .synthetic import planted_bundle

PLANTED = "planted"
DEFAULT_DEMO = "stl10-vitb16"  # real pictures, real ImageNet words, both senses of "crane" in its noun bank


@dataclass(frozen=True)
class Demo:
    """A demo the explorer and ``python -m cae_core demo`` can open.

    ``path`` is None for the planted demo (made in memory); ``has_pictures`` says whether the image files
    its ``image_ids`` name are on disk; ``synthetic`` marks planted embeddings (no real semantics).
    """

    name: str
    path: Path | None
    model: str
    n_images: int
    n_classes: int
    n_nouns: int
    n_captions: int
    has_pictures: bool
    synthetic: bool
    description: str


# the planted demo's recipe: its listing reads these, and only opening it builds the bundle
_PLANTED_RECIPE = dict(n_images=600, n_classes=6, dim=128, n_nouns=240, n_captions=360, noise=0.8, seed=0)
_PLANTED_MODEL = "planted (synthetic, CLIP-like geometry)"
_PLANTED_DEMO = Demo(PLANTED, None, _PLANTED_MODEL, _PLANTED_RECIPE["n_images"], _PLANTED_RECIPE["n_classes"],
                     _PLANTED_RECIPE["n_nouns"], _PLANTED_RECIPE["n_captions"], False, True,
                     f"planted embeddings of {_PLANTED_RECIPE['n_classes']} classes with CLIP's geometry; texts are "
                     "named 'noun 3-17' (synthetic: the words mean nothing)")


def _planted_demo_bundle() -> FeaturesBundle:
    bundle = planted_bundle(**_PLANTED_RECIPE)
    bundle.metadata.update(model=_PLANTED_MODEL, image_source=PLANTED)
    return bundle


def _npz_header(path: Path) -> tuple[dict[str, tuple[int, ...]], dict]:
    """Shapes of the arrays in an ``.npz`` (from their headers alone) and its ``meta_json``."""
    shapes, metadata = {}, {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            key = member.removesuffix(".npy")
            with archive.open(member) as stream:
                if key == "meta_json":
                    metadata = json.loads(str(np.lib.format.read_array(stream, allow_pickle=False)))
                    continue
                version = np.lib.format.read_magic(stream)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shapes[key] = read_header(stream)[0]
    return shapes, metadata


def _describe(path: Path) -> Demo | None:
    """The demo a bundle file makes, or None when it is not a readable features bundle."""
    try:
        shapes, metadata = _npz_header(path)
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    if not {"image_embeddings", "noun_embeddings", "caption_embeddings"} <= shapes.keys():
        return None
    root = image_root_of(metadata, path)
    return Demo(name=path.stem, path=path, model=f"{model_name(metadata)} "
                f"({metadata.get('pretrained') or 'weights unknown'})", n_images=shapes["image_embeddings"][0],
                n_classes=shapes.get("class_names", (0,))[0], n_nouns=shapes["noun_embeddings"][0],
                n_captions=shapes["caption_embeddings"][0], has_pictures=root is not None and root.is_dir(),
                synthetic=bool(metadata.get("synthetic")),
                description=f"{metadata.get('image_source', path.stem)}; nouns: "
                            f"{metadata.get('nouns_corpus', 'not described')}; captions: "
                            f"{metadata.get('captions_corpus', 'not described')}")


def find_demos(data_dir: Path | None = None) -> list[Demo]:
    """Every features bundle under ``<data_dir>/embeddings/`` (``*.npz``, one folder deep), then those fetched
    (a name found in both is read from ``data_dir``), the default first, then the planted demo. Files that
    are not bundles are passed over."""
    folder = Path(data_dir if data_dir is not None else default_data_dir()) / "embeddings"
    paths = sorted(folder.glob("*.npz")) + sorted(folder.glob("*/*.npz")) if folder.is_dir() else []
    paths += sorted(demo_sources.fetched_dir().glob("*/*.npz"))
    found = {}
    for demo in map(_describe, paths):
        if demo is not None:
            found.setdefault(demo.name, demo)
    demos = sorted(found.values(), key=lambda demo: demo.name != DEFAULT_DEMO)
    return demos + [_PLANTED_DEMO]


def default_demo(data_dir: Path | None = None) -> str:
    """The demo opened when none is named: ``DEFAULT_DEMO`` where its bundle is present, else the planted one."""
    return DEFAULT_DEMO if any(demo.name == DEFAULT_DEMO for demo in find_demos(data_dir)) else PLANTED


def fetchable_demos(present: list[Demo]) -> list[demo_sources.DemoSource]:
    """The demos that can be built from their public sources and are not among ``present``."""
    names = {demo.name for demo in present}
    return [source for name, source in demo_sources.DEMO_SOURCES.items() if name not in names]


def load_demo(name: str, data_dir: Path | None = None) -> tuple[FeaturesBundle, Path | None, Demo]:
    """(bundle, folder of its pictures or None, its description) for the demo called ``name``."""
    demos = {demo.name: demo for demo in find_demos(data_dir)}
    if name not in demos:
        fetch = f" (it can be fetched: Fetch on Home, or python -m cae_core demo --fetch {name})" \
            if name in demo_sources.DEMO_SOURCES else ""
        raise CaeError(f"no demo called {quoted(name)}{fetch}; found: {', '.join(demos)}")
    demo = demos[name]
    if demo.path is None:
        return _planted_demo_bundle(), None, demo
    try:
        bundle = load_bundle(demo.path)
    except CaeError as error:
        raise CaeError(f"the demo {name!r} ({demo.path}) cannot be opened: {error}") from error
    root = image_root_of(bundle.metadata, demo.path)
    return bundle, root if demo.has_pictures else None, demo
