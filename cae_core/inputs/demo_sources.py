"""The real demos, built from their public sources where ``CAE_DATA_DIR`` does not hold them.

Each demo names the files it is made of (raw GitHub URLs pinned to a commit), each file's SHA-256 and
size, and the conversion of those files into a features bundle. The checksums are those of the files at
the pinned commits (git's own copies, read where this project was written); a download that differs is
refused. The bundle is written to ``<cache>/demos/NAME/NAME.npz``, where ``find_demos`` lists it.

Four of the five bundles under ``../shared/data/embeddings`` are made this way (their README's provenance).
``stl10-vitb16`` is not: its labels were given by hand and its 200 pictures are not in its source.
"""

from __future__ import annotations

import csv
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ..errors import CaeError
from ..progress import Progress, no_progress
from .bundle import FeaturesBundle, save_bundle
from .cache import cache_dir
from .downloads import download

RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
IMAS = ("bunnieslala/IMAS", "34a935ae31b4fab1a628d85cc76cab2100d362b2")
DETIC = ("facebookresearch/Detic", "436cda2a2347df60a7c66daca0e8c59f93dc5e79")
SEMANTICLIP = ("farahamorri/SemantiCLIP", "f08705c8f8bf1dd58751d31daf2f09de383ff2bb")


@dataclass(frozen=True)
class SourceFile:
    """One file a demo is made of: where it is, its SHA-256 (hex) and its size in bytes."""

    url: str
    sha256: str
    size: int

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class DemoSource:
    """A demo that can be built from public files: ``build`` turns the downloaded files (by key) into a bundle."""

    name: str
    description: str
    files: Mapping[str, SourceFile]
    build: Callable[[Mapping[str, Path]], FeaturesBundle]

    @property
    def size(self) -> int:
        return sum(source.size for source in self.files.values())


def _github(repository: tuple[str, str], path: str, sha256: str, size: int) -> SourceFile:
    repo, commit = repository
    return SourceFile(RAW_URL.format(repo=repo, commit=commit, path=path), sha256, size)


DETIC_FILES = {
    "nouns": _github(DETIC, "datasets/metadata/lvis_v1_clip_a+cname.npy",
                     "16059f1fe5f7d857273d16a1b7c6d6141a88d133e99a107be5065f42311da0f8", 1_232_000),
    "noun_names": _github(DETIC, "datasets/metadata/lvis_v1_train_cat_info.json",
                          "56abd7581b779fb62b167a52c76026839eabbfb5bfb12986e6170fbe0111fe40", 268_947),
    "captions": _github(DETIC, "datasets/metadata/o365_clip_a+cnamefix.npy",
                        "389a43e5c38eb22ca1b46a7328e57e7cd281b00c64250016be80d3c771711c13", 373_888),
    "caption_names": _github(DETIC, "datasets/metadata/Objects365_names_fix.csv",
                             "2629b3d9f35163bfb25b49ef5d40cfbc0d037439b48b6884205bfaf3d2198c82", 8_208),
}
DETIC_BANKS = {"model": "ViT-B-32", "pretrained": "openai",
               "nouns_corpus": "LVIS 1203 category names, prompt 'a {name}' (Detic)",
               "captions_corpus": "Objects365 names, prompt 'a {name}' (Detic)"}


def _detic_banks(paths: Mapping[str, Path]) -> dict:
    """The LVIS noun bank (names, WordNet synsets and definitions from LVIS's category list) and the
    Objects365 bank, as Detic embedded them with CLIP ViT-B/32 ("a {name}")."""
    categories = sorted(json.loads(paths["noun_names"].read_text(encoding="utf-8")), key=lambda c: c["id"])
    with open(paths["caption_names"], newline="", encoding="utf-8") as stream:
        # id, name as published, name fixed: Detic embedded the fixed names ("cnamefix")
        caption_names = [row[2] for row in csv.reader(stream)]
    return dict(noun_embeddings=_float_rows(np.load(paths["nouns"])),
                nouns=[category["name"].replace("_", " ") for category in categories],
                noun_synsets=[category["synset"] for category in categories],
                noun_glosses=[category["def"] for category in categories],
                caption_embeddings=_float_rows(np.load(paths["captions"])),
                captions=[f"a {name}" for name in caption_names])


def _float_rows(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float32)  # the sources store fp16; the bundle normalises the rows


def _torch_tensor(path: Path) -> np.ndarray:
    import torch  # a dependency of the engine already; imported here because only .pt sources need it

    return torch.load(path, map_location="cpu", weights_only=True).numpy()  # weights_only: no pickled code


def _imas_bundle(paths: Mapping[str, Path], dataset: str, class_names: str) -> FeaturesBundle:
    """CoOp's test then val split of ``dataset``, as Tip-Adapter caches them (one centre crop, fp16)."""
    splits = ("test", "val")
    features = [_float_rows(_torch_tensor(paths[f"{split}_features"])) for split in splits]
    labels = np.concatenate([_torch_tensor(paths[f"{split}_labels"]) for split in splits])
    image_ids = [f"{split}{row:05d}" for split, rows in zip(splits, features) for row in range(len(rows))]
    files = ", ".join(f"caches/{dataset}/{split}_{kind}.pt" for split in splits for kind in "fl")
    metadata = dict(DETIC_BANKS, image_source=f"github.com/{IMAS[0]}@{IMAS[1]} ({files}); Tip-Adapter-style "
                                              "CoOp split features, single centre-crop view, fp16 source")
    return FeaturesBundle(image_embeddings=np.concatenate(features), labels=labels, image_ids=image_ids,
                          class_names=class_names.split("|"), metadata=metadata, **_detic_banks(paths))


def _imas_files(dataset: str, digests: Mapping[str, tuple[str, int]]) -> dict[str, SourceFile]:
    files = {f"{split}_{kind}": _github(IMAS, f"caches/{dataset}/{split}_{kind[0]}.pt", *digests[f"{split}_{kind}"])
             for split in ("test", "val") for kind in ("features", "labels")}
    return {**files, **DETIC_FILES}


def _semanticlip_bundle(paths: Mapping[str, Path]) -> FeaturesBundle:
    """SemantiCLIP's 10 Food-101 classes: its train then test features (250 images a class)."""
    splits = ("train", "test")
    metadata = dict(DETIC_BANKS, image_source=f"github.com/{SEMANTICLIP[0]}@{SEMANTICLIP[1]} "
                                              "(train/test_features.npy, train/test_labels.npy)")
    return FeaturesBundle(
        image_embeddings=np.concatenate([_float_rows(np.load(paths[f"{split}_features"])) for split in splits]),
        labels=np.concatenate([np.load(paths[f"{split}_labels"]) for split in splits]),
        class_names="apple_pie|french_fries|guacamole|hamburger|ice_cream|omelette|paella|pizza|sushi|tacos".split("|"),
        metadata=metadata, **_detic_banks(paths))


# The class names the sources' label numbers stand for, as in the shared bundles: OpenAI's CLIP prompt lists
# in CoOp's label order (Caltech-101: CoOp's names); SemantiCLIP's notebook names its ten Food-101 classes.
DTD_CLASSES = ("banded|blotchy|braided|bubbly|bumpy|chequered|cobwebbed|cracked|crosshatched|crystalline|dotted|"
               "fibrous|flecked|freckled|frilly|gauzy|grid|grooved|honeycombed|interlaced|knitted|lacelike|lined|"
               "marbled|matted|meshed|paisley|perforated|pitted|pleated|polka-dotted|porous|potholed|scaly|smeared|"
               "spiralled|sprinkled|stained|stratified|striped|studded|swirly|veined|waffled|woven|wrinkled|"
               "zigzagged")
UCF101_CLASSES = (
    "Apply Eye Makeup|Apply Lipstick|Archery|Baby Crawling|Balance Beam|Band Marching|Baseball Pitch|Basketball|"
    "Basketball Dunk|Bench Press|Biking|Billiards|Blow Dry Hair|Blowing Candles|Body Weight Squats|Bowling|"
    "Boxing Punching Bag|Boxing Speed Bag|Breast Stroke|Brushing Teeth|Clean And Jerk|Cliff Diving|Cricket Bowling|"
    "Cricket Shot|Cutting In Kitchen|Diving|Drumming|Fencing|Field Hockey Penalty|Floor Gymnastics|Frisbee Catch|"
    "Front Crawl|Golf Swing|Haircut|Hammering|Hammer Throw|Hand Stand Pushups|Handstand Walking|Head Massage|"
    "High Jump|Horse Race|Horse Riding|Hula Hoop|Ice Dancing|Javelin Throw|Juggling Balls|Jumping Jack|Jump Rope|"
    "Kayaking|Knitting|Long Jump|Lunges|Military Parade|Mixing|Mopping Floor|Nunchucks|Parallel Bars|"
    "Pizza Tossing|Playing Cello|Playing Daf|Playing Dhol|Playing Flute|Playing Guitar|Playing Piano|"
    "Playing Sitar|Playing Tabla|Playing Violin|Pole Vault|Pommel Horse|Pull Ups|Punch|Push Ups|Rafting|"
    "Rock Climbing Indoor|Rope Climbing|Rowing|Salsa Spin|Shaving Beard|Shotput|Skate Boarding|Skiing|Skijet|"
    "Sky Diving|Soccer Juggling|Soccer Penalty|Still Rings|Sumo Wrestling|Surfing|Swing|Table Tennis Shot|Tai Chi|"
    "Tennis Swing|Throw Discus|Trampoline Jumping|Typing|Uneven Bars|Volleyball Spiking|Walking With Dog|"
    "Wall Pushups|Writing On Board|Yo Yo")
CALTECH101_CLASSES = (
    "face|leopard|motorbike|accordion|airplane|anchor|ant|barrel|bass|beaver|binocular|bonsai|brain|brontosaurus|"
    "buddha|butterfly|camera|cannon|car side|ceiling fan|cellphone|chair|chandelier|cougar body|cougar face|crab|"
    "crayfish|crocodile|crocodile head|cup|dalmatian|dollar bill|dolphin|dragonfly|electric guitar|elephant|emu|"
    "euphonium|ewer|ferry|flamingo|flamingo head|garfield|gerenuk|gramophone|grand piano|hawksbill|headphone|"
    "hedgehog|helicopter|ibis|inline skate|joshua tree|kangaroo|ketch|lamp|laptop|llama|lobster|lotus|mandolin|"
    "mayfly|menorah|metronome|minaret|nautilus|octopus|okapi|pagoda|panda|pigeon|pizza|platypus|pyramid|revolver|"
    "rhino|rooster|saxophone|schooner|scissors|scorpion|sea horse|snoopy|soccer ball|stapler|starfish|stegosaurus|"
    "stop sign|strawberry|sunflower|tick|trilobite|umbrella|watch|water lilly|wheelchair|wild cat|windsor chair|"
    "wrench|yin yang")

_BANKS = "LVIS nouns and Objects365 names embedded by Detic"
DEMO_SOURCES = {source.name: source for source in (
    DemoSource("food101-vitb32", f"2,500 Food-101 images of 10 classes, CLIP ViT-B/32 (SemantiCLIP); {_BANKS}", {
        "train_features": _github(SEMANTICLIP, "train_features.npy",
                                  "93dca49d39fde671ff6195d0e4e7bd71cc1a88033abd9c424c7fe5412dcbe0e5", 2_048_128),
        "train_labels": _github(SEMANTICLIP, "train_labels.npy",
                                "3ed441e994fc31ebc6698b584e0c339185f346ac6c14028bef7733bfa1c9751b", 16_128),
        "test_features": _github(SEMANTICLIP, "test_features.npy",
                                 "f932c6fa2e72f02cad09c31ba358a93089cbe4ca756883b7845ec830614c6786", 512_128),
        "test_labels": _github(SEMANTICLIP, "test_labels.npy",
                               "5bc72b526870079736910f06f27fc98de25443f171a759425832d815cd63896e", 4_128),
        **DETIC_FILES}, _semanticlip_bundle),
    DemoSource("dtd-vitb32", f"2,820 DTD texture images of 47 classes, CLIP ViT-B/32 (IMAS); {_BANKS}", _imas_files(
        "dtd", {"test_features": ("db2d5db5c49cc94ec9de82c1d590204ee54331cbe191819a99c5dbc56aa3b729", 1_734_114),
                "test_labels": ("ee2c3be016786dcf9f06aaec672638f20c4926d46a560ebb8a09bce9584ca0f5", 15_074),
                "val_features": ("19dd595e9bb815aa423a6bdcc83cb20618fd7d4ad21953d6c2aea1a8a0efc100", 1_156_571),
                "val_labels": ("61010bbb3934c585022420585e66512eb7e9565801cbd6d8c3a6eee6c335349f", 10_523)}),
        functools.partial(_imas_bundle, dataset="dtd", class_names=DTD_CLASSES)),
    DemoSource("ucf101-vitb32", f"5,681 UCF-101 video frames of 101 actions, CLIP ViT-B/32 (IMAS); {_BANKS}",
               _imas_files("ucf101", {
                   "test_features": ("8cd406f31d75e46e733b3ea525c5d1a829e678e2f4916fb369ca87eab2b7fdfe", 3_875_298),
                   "test_labels": ("1efaa2678d5b7e48a1a94988a9f8d50a911f6b02979998ae44151fc617628187", 31_778),
                   "val_features": ("8345ab25f9c0a8ccd4042281c576f2e653a5403154223354228c819593c52dd6", 1_945_051),
                   "val_labels": ("aa8180b44863f3610b56b972511d35c0c63cea703f0cb221db232be97610754e", 16_731)}),
               functools.partial(_imas_bundle, dataset="ucf101", class_names=UCF101_CLASSES)),
    DemoSource("caltech101-vitb32", f"4,114 Caltech-101 images of 100 classes, CLIP ViT-B/32 (IMAS); {_BANKS}",
               _imas_files("caltech101", {
                   "test_features": ("b4ff2dcc89dd0f6bcd87f02467166c2745a4a016a83e7f5bade407257bb694f3", 2_525_666),
                   "test_labels": ("0cdd98e3cf06d0be6b47d71425efbd2ea060cd9813bb09834875f8ad8657d6a9", 21_282),
                   "val_features": ("005a5f52b5d33c51160eb1c6a5ad09d12b0efe3d5465e79a8004fa829508417c", 1_690_075),
                   "val_labels": ("6117d2ebfa2a54acbaf1b2dafc7c90f9384062bdbb111851beadaf2b7ab3e1ae", 14_747)}),
               functools.partial(_imas_bundle, dataset="caltech101", class_names=CALTECH101_CLASSES)),
)}


def fetched_dir() -> Path:
    """Where fetched demos are built: ``<cache>/demos`` (``CAE_CACHE_DIR``)."""
    return cache_dir() / "demos"


def fetched_path(name: str) -> Path:
    return fetched_dir() / name / f"{name}.npz"


def fetch_demo(name: str, progress: Progress = no_progress,
               sources: Mapping[str, DemoSource] | None = None) -> Path:
    """The bundle of the demo ``name``, built from its public sources unless built before (then reused).

    Every file is downloaded into ``<cache>/downloads/demo-sources`` and checked against its recorded
    SHA-256 before the conversion reads it. Progress: stage "download" (bytes of all files), then "build".
    """
    sources = DEMO_SOURCES if sources is None else sources
    if name not in sources:
        raise CaeError(f"no demo called {name!r} can be fetched; these can: {', '.join(sources) or 'none'}")
    source, dest = sources[name], fetched_path(name)
    if dest.is_file():
        return dest
    folder = cache_dir() / "downloads" / "demo-sources"
    hint = (f"without internet, set CAE_DATA_DIR to a folder holding embeddings/{name}/{name}.npz, or copy that "
            f"bundle to {dest}")
    paths, done = {}, 0
    for key, file in source.files.items():
        def file_progress(stage: str, fraction: float, message: str, before: int = done, size: int = file.size):
            progress(stage, (before + fraction * size) / source.size, message)

        # named by content: the banks four demos share are fetched once
        paths[key] = download(file.url, folder / f"{file.sha256[:16]}-{file.name}", file.sha256, file.size,
                              what=f"{name}'s {file.name}", offline_hint=hint, progress=file_progress)
        done += file.size
    progress("download", 1.0, f"{len(paths)} files, {source.size / 2**20:.1f} MiB, checksums verified")
    progress("build", 0.0, f"converting into {dest.name}")
    bundle = source.build(paths)
    bundle.metadata.update(fetched_from=sorted({file.url for file in source.files.values()}))
    save_bundle(bundle, dest)
    progress("build", 1.0, f"{bundle.n_images:,} images, {len(bundle.nouns):,} nouns, "
                           f"{len(bundle.captions):,} captions")
    return dest
