"""Two ready sets of encoding choices, and how long each would take here, from a short measured run.

``quick`` finishes in minutes on a 2-core CPU; ``paper`` is the CAE/TAC setting (all of WordNet with
TAC's 7 templates, all of Flickr30k), hours on a CPU. The estimate times this machine's encoder on a
sample of the actual images and texts; it is not a constant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CaeError
from ..progress import timed
from .corpora import TAC_TEMPLATES, read_caption_source, read_noun_source
from .encoders import ClipModel, encode_images, encode_texts
from .sources import ImageSource

SAMPLE_IMAGES = 16
SAMPLE_TEXTS = 128


@dataclass(frozen=True)
class EncodePreset:
    """Arguments of ``encode_dataset``: at most ``limit`` images, the ``nouns`` bank with ``templates``
    prompt templates, the first ``max_captions`` of the ``captions`` bank (None: all)."""

    name: str
    description: str
    limit: int | None
    nouns: str
    templates: int
    captions: str
    max_captions: int | None


PRESETS: dict[str, EncodePreset] = {preset.name: preset for preset in (
    EncodePreset("quick", "1,000 images, the 1,000 ImageNet class names with one template, the first 5,000 "
                          "Flickr8k captions: minutes on a CPU", 1000, "imagenet", 1, "flickr8k", 5000),
    EncodePreset("paper", "all images, all of WordNet's nouns with TAC's 7 templates, all of Flickr30k: the "
                          "paper's setting, hours on a CPU", None, "wordnet", len(TAC_TEMPLATES), "flickr30k", None),
)}


@dataclass
class EncodeRates:
    """Items per second measured on this machine: images, noun prompts, captions (``device`` they ran on)."""

    images: float
    noun_prompts: float
    captions: float
    device: str


@dataclass
class EncodeEstimate:
    """Work a preset asks for and the seconds it would take at ``rates`` (before anything is cached)."""

    preset: str
    n_images: int
    n_noun_prompts: int
    n_captions: int
    seconds: float


def measure_rates(clip: ClipModel, images: ImageSource, noun_prompts: list[str], captions: list[str],
                  batch_size: int = 64) -> EncodeRates:
    """Encode small samples (uncached) and return the throughput of each kind of item.

    The architecture's speed does not depend on its weights, so ``clip`` may be an untrained copy.
    Samples are taken evenly through their lists; a first tiny batch warms the model up.
    """
    if not images.records or not noun_prompts or not captions:
        raise CaeError("cannot measure the encoder's speed without images, nouns and captions")

    def sample(items: list, n: int) -> list:
        return [items[i] for i in np.linspace(0, len(items) - 1, min(n, len(items))).astype(int)]

    image_sample = ImageSource(images.name, images.root, sample(images.records, SAMPLE_IMAGES), images.class_names)
    encode_texts(clip, noun_prompts[:4], batch_size, cache=False)  # warm-up
    nouns, texts = sample(noun_prompts, SAMPLE_TEXTS), sample(captions, SAMPLE_TEXTS)
    image_s = timed(encode_images, clip, image_sample, min(batch_size, SAMPLE_IMAGES), cache=False, num_workers=0)[1]
    noun_s = timed(encode_texts, clip, nouns, batch_size, cache=False)[1]
    caption_s = timed(encode_texts, clip, texts, batch_size, cache=False)[1]
    return EncodeRates(len(image_sample.records) / image_s, len(nouns) / noun_s, len(texts) / caption_s,
                       clip.device.type)


def preset_banks(preset: EncodePreset) -> tuple[np.ndarray, np.ndarray]:
    """(nouns, captions) a preset encodes; each noun goes into ``preset.templates`` prompts."""
    return read_noun_source(preset.nouns).words, read_caption_source(preset.captions).head(preset.max_captions).captions


def estimate(preset: EncodePreset, n_images: int, n_noun_prompts: int, n_captions: int,
             rates: EncodeRates) -> EncodeEstimate:
    """Seconds to encode that much at ``rates``."""
    seconds = n_images / rates.images + n_noun_prompts / rates.noun_prompts + n_captions / rates.captions
    return EncodeEstimate(preset.name, n_images, n_noun_prompts, n_captions, seconds)


def estimate_presets(clip: ClipModel, images: ImageSource) -> list[EncodeEstimate]:
    """Every preset's estimate for ``images`` on ``clip``'s device, from one measured run."""
    banks = {name: preset_banks(preset) for name, preset in PRESETS.items()}
    # measured on the quick preset's texts: its nouns with the first template, its captions
    nouns, captions = banks["quick"]
    rates = measure_rates(clip, images, [TAC_TEMPLATES[0].format(word) for word in nouns], list(captions))
    n = len(images.records)
    return [estimate(preset, min(n, preset.limit or n), len(banks[name][0]) * preset.templates,
                     len(banks[name][1]), rates) for name, preset in PRESETS.items()]
