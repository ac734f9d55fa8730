"""From real images and texts to the features bundle: ``encode_dataset`` and the ``encode``/``cache`` commands."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import CaeError
from ..progress import Progress, timed
from .bundle import FeaturesBundle
from .cache import require_writable
from .corpora import TAC_TEMPLATES, CaptionBank, read_caption_source, read_noun_source, read_per_image_captions
from .distributed import Shard
from .encoders import ClipModel, encode_images, encode_texts, load_clip
from .sources import SkippedFile, open_image_source


RANDOM_WEIGHTS = "random"  # the --pretrained value for an untrained model


def pretrained_option(value: str) -> str | None:
    """``--pretrained`` as ``load_clip`` takes it: None for random weights, else the tag or file."""
    return None if value == RANDOM_WEIGHTS else value


@dataclass
class EncodeReport:
    """What ``encode_dataset`` did: counts, files skipped and why, seconds per stage."""

    n_images: int
    n_nouns: int
    n_captions: int
    skipped: list[SkippedFile] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"encoded {self.n_images} images, {self.n_nouns} nouns, {self.n_captions} captions "
                 f"({', '.join(f'{stage} {seconds:.1f}s' for stage, seconds in self.seconds.items())})",
                 f"skipped {len(self.skipped)} file(s)" + (":" if self.skipped else "")]
        lines += [f"  {item.image_id}: {item.reason}" for item in self.skipped]
        return "\n".join(lines)


def encode_dataset(images: str, model: str = "ViT-B-32", pretrained: str | None = "openai", nouns: str = "wordnet",
                   captions: str = "flickr30k", device: str = "auto", batch_size: int = 128,
                   limit: int | None = None, templates: int = len(TAC_TEMPLATES), max_captions: int | None = None,
                   progress: Progress | None = None, clip: ClipModel | None = None,
                   per_image_captions: str | None = None, chunk_rows: int | None = None,
                   shard: Shard | None = None) -> tuple[FeaturesBundle, EncodeReport]:
    """Encode an image source and the two text banks with one CLIP model into a ``FeaturesBundle``.

    ``images``: a source spec for ``sources.open_image_source``; ``nouns``: "wordnet" or a file;
    ``captions``: "flickr30k", "flickr8k", a file or a folder, of which ``max_captions`` are kept (the
    first ones; all when None); ``templates``: how many of TAC's 7 prompt templates to ensemble
    (1 = "itap of a {}." alone, 7x faster); ``PRESETS`` in ``presets.py`` name two sets of these.
    ``per_image_captions``: a CSV of ``image_id,caption`` (SAC's captions, each describing one image)
    used as the caption bank instead of ``captions``; its rows for images that are not encoded, and
    empty captions, are skipped and reported. Everything is cached, so a
    second call with the same inputs does no model work. ``clip``: a model already loaded (by
    ``load_clip(model, pretrained, device)``), which an interactive caller keeps between encodings.
    ``chunk_rows``: images or texts per cache chunk (default 1024 images, 8192 prompts' worth of texts).
    ``shard``: this process is one of several torchrun workers (``distributed.shard_from_env``); each
    encodes its share of every stage's chunks, and all of them return the same complete bundle.
    """
    if not 1 <= templates <= len(TAC_TEMPLATES):
        raise CaeError(f"--templates must be between 1 and {len(TAC_TEMPLATES)}, got {templates}")
    if batch_size < 1:
        raise CaeError(f"--batch-size must be positive, got {batch_size}")
    if max_captions is not None and max_captions < 1:
        raise CaeError(f"--max-captions must be positive, got {max_captions}")
    if chunk_rows is not None and chunk_rows < 1:
        raise CaeError(f"--chunk-rows must be positive, got {chunk_rows}")
    require_writable()
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    source = open_image_source(images, limit=limit)
    noun_bank = read_noun_source(nouns)
    if per_image_captions:  # read before any model work: a bad file fails fast
        own = read_per_image_captions(per_image_captions, [record.image_id for record in source.records])
    else:
        caption_bank = read_caption_source(captions).head(max_captions)
    if clip is None:
        clip = load_clip(model, pretrained, device if shard is None else shard.select_device(device))
    if shard is not None and clip.checkpoint_fingerprint is None:
        raise CaeError("random weights cannot be shared by torchrun workers (they share their work through the "
                       "cache, which random weights never enter); save the model's state_dict and pass "
                       "--pretrained /path/to/checkpoint.pt")
    seconds["load"] = time.perf_counter() - started

    (image_embeddings, kept, skipped), seconds["images"] = timed(encode_images, clip, source, batch_size,
                                                                 progress=progress, chunk_rows=chunk_rows,
                                                                 shard=shard)
    if not len(kept):
        raise CaeError(f"none of the {len(source.records)} images of {source.name} could be decoded")
    image_ids = np.array([source.records[i].image_id for i in kept])
    caption_image_ids = None
    if per_image_captions:
        decoded = np.isin(own.image_ids, image_ids)  # an image that could not be decoded takes its captions along
        caption_bank = CaptionBank(f"per-image captions ({own.name})", own.captions[decoded])
        caption_image_ids = own.image_ids[decoded]
        skipped = skipped + [SkippedFile(f"{own.name} {row}", reason) for row, reason in own.skipped] + \
            [SkippedFile(f"{own.name}: caption of {image_id}", "its image could not be decoded")
             for image_id in own.image_ids[~decoded]]
    prompt_templates = TAC_TEMPLATES[:templates]
    noun_embeddings, seconds["nouns"] = timed(encode_texts, clip, noun_bank.words, batch_size,
                                              templates=prompt_templates, progress=progress, stage="nouns",
                                              chunk_rows=chunk_rows, shard=shard)
    caption_embeddings, seconds["captions"] = timed(encode_texts, clip, caption_bank.captions, batch_size,
                                                    progress=progress, stage="captions", chunk_rows=chunk_rows,
                                                    shard=shard)
    labels = source.labels
    bundle = FeaturesBundle(
        image_embeddings=image_embeddings, labels=None if labels is None else labels[kept],
        image_ids=image_ids, class_names=source.class_names, caption_image_ids=caption_image_ids,
        noun_embeddings=noun_embeddings, nouns=noun_bank.words, noun_synsets=noun_bank.synsets,
        noun_glosses=noun_bank.glosses, caption_embeddings=caption_embeddings, captions=caption_bank.captions,
        metadata={"model": model, "pretrained": pretrained, "checkpoint": clip.checkpoint_fingerprint,
                  "precision": str(clip.dtype), "image_source": source.name, "image_root": str(source.root),
                  "preprocess": repr(clip.preprocess), "nouns_corpus": noun_bank.name,
                  "noun_templates": list(prompt_templates), "noun_underscores": "replaced by spaces",
                  "captions_corpus": caption_bank.name, "n_skipped": len(source.skipped) + len(skipped)})
    report = EncodeReport(len(kept), len(noun_bank), len(caption_bank), source.skipped + skipped, seconds)
    return bundle, report
