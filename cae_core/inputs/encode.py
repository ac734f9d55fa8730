"""From real images and texts to the features bundle: ``encode_dataset`` and the ``encode``/``cache`` commands."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bundle import FeaturesBundle, save_bundle
from .cache import cache_dir, clear_cache, list_entries, require_writable
from .corpora import TAC_TEMPLATES, read_caption_source, read_noun_source
from ..progress import Progress
from .encoders import ClipModel, encode_images, encode_text_trimmed, encode_texts, load_clip
from ..errors import CaeError
from .sources import SkippedFile, open_image_source


RANDOM_WEIGHTS = "random"  # the --pretrained value for an untrained model


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
                   limit: int | None = None, templates: int = len(TAC_TEMPLATES),
                   progress: Progress | None = None, clip: ClipModel | None = None) -> tuple[FeaturesBundle, EncodeReport]:
    """Encode an image source and the two text banks with one CLIP model into a ``FeaturesBundle``.

    ``images``: a source spec for ``sources.open_image_source``; ``nouns``: "wordnet" or a file;
    ``captions``: "flickr30k", "flickr8k", a file or a folder; ``templates``: how many of TAC's 7
    prompt templates to ensemble (1 = "itap of a {}." alone, 7x faster). Everything is cached, so a
    second call with the same inputs does no model work. ``clip``: a model already loaded (by
    ``load_clip(model, pretrained, device)``), which an interactive caller keeps between encodings.
    """
    if not 1 <= templates <= len(TAC_TEMPLATES):
        raise CaeError(f"--templates must be between 1 and {len(TAC_TEMPLATES)}, got {templates}")
    if batch_size < 1:
        raise CaeError(f"--batch-size must be positive, got {batch_size}")
    require_writable()
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    source = open_image_source(images, limit=limit)
    noun_bank = read_noun_source(nouns)
    caption_bank = read_caption_source(captions)
    if clip is None:
        clip = load_clip(model, pretrained, device)
    seconds["load"] = time.perf_counter() - started

    def timed(name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds[name] = time.perf_counter() - start
        return result

    image_embeddings, kept, skipped = timed("images", encode_images, clip, source, batch_size, progress=progress)
    if not len(kept):
        raise CaeError(f"none of the {len(source.records)} images of {source.name} could be decoded")
    prompt_templates = TAC_TEMPLATES[:templates]
    noun_embeddings = timed("nouns", encode_texts, clip, noun_bank.words, batch_size, templates=prompt_templates,
                            progress=progress, stage="nouns")
    caption_embeddings = timed("captions", encode_texts, clip, caption_bank.captions, batch_size,
                               progress=progress, stage="captions")
    labels = source.labels
    bundle = FeaturesBundle(
        image_embeddings=image_embeddings, labels=None if labels is None else labels[kept],
        image_ids=np.array([source.records[i].image_id for i in kept]), class_names=source.class_names,
        noun_embeddings=noun_embeddings, nouns=noun_bank.words, noun_synsets=noun_bank.synsets,
        noun_glosses=noun_bank.glosses, caption_embeddings=caption_embeddings, captions=caption_bank.captions,
        metadata={"model": model, "pretrained": pretrained, "checkpoint": clip.checkpoint_fingerprint,
                  "precision": str(clip.dtype), "image_source": source.name, "image_root": str(source.root),
                  "preprocess": repr(clip.preprocess), "nouns_corpus": noun_bank.name,
                  "noun_templates": list(prompt_templates), "noun_underscores": "replaced by spaces",
                  "captions_corpus": caption_bank.name, "n_skipped": len(source.skipped) + len(skipped)})
    report = EncodeReport(len(kept), len(noun_bank), len(caption_bank), source.skipped + skipped, seconds)
    return bundle, report


# ---------------------------------------------------------------- command line

class _TqdmProgress:
    """Maps ``progress(stage, fraction, message)`` to one tqdm bar per stage (on stderr)."""

    def __init__(self) -> None:
        self.bars: dict = {}

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=1000, desc=stage, unit="‰", file=sys.stderr, leave=True)
        bar.update(int(fraction * 1000) - bar.n)
        bar.set_postfix_str(message, refresh=False)
        if fraction >= 1.0:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def add_encode_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("encode", help="encode images, nouns and captions into a features bundle")
    parser.add_argument("--images", required=True, help="folder, .zip, shared image set or benchmark (cifar10)")
    parser.add_argument("--limit", type=int, default=None, help="at most N images (balanced over classes)")
    parser.add_argument("--model", default="ViT-B-32", help="open_clip architecture")
    parser.add_argument("--pretrained", default="openai",
                        help=f"open_clip tag, checkpoint file, or '{RANDOM_WEIGHTS}' to explore the mechanics "
                             "(random weights: the features carry no semantics)")
    parser.add_argument("--nouns", default="wordnet", help="wordnet or a file with one noun per line")
    parser.add_argument("--captions", default="flickr30k", help="flickr30k, flickr8k, a file or a folder")
    parser.add_argument("--templates", type=int, default=len(TAC_TEMPLATES),
                        help="how many of TAC's 7 noun prompt templates to average (1 is 7x faster)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", required=True, type=Path, help="output bundle (.npz)")
    parser.set_defaults(handler=run_encode)
    return parser


def run_encode(args: argparse.Namespace) -> int:
    pretrained = None if args.pretrained == RANDOM_WEIGHTS else args.pretrained
    if pretrained is None:
        print(f"warning: {args.model} with random weights; clusters and matched texts carry no semantics",
              file=sys.stderr)
    progress = _TqdmProgress()
    try:
        bundle, report = encode_dataset(args.images, args.model, pretrained, args.nouns, args.captions,
                                        args.device, args.batch_size, args.limit, args.templates, progress)
    finally:
        progress.close()
    print(save_bundle(bundle, args.out))
    print(report.summary())
    return 0


def add_cache_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("cache", help="list what is cached (embeddings, corpora)")
    parser.add_argument("--clear", action="store_true", help="delete every cache entry")
    parser.set_defaults(handler=run_cache)
    return parser


def run_cache(args: argparse.Namespace) -> int:
    if args.clear:
        print(f"freed {clear_cache() / 2**20:.1f} MiB in {cache_dir()}")
        return 0
    entries = list_entries()
    print(f"{cache_dir()}: {len(entries)} entries, {sum(e.size_bytes for e in entries) / 2**20:.1f} MiB")
    for entry in entries:
        state = "complete" if entry.complete else f"{entry.n_chunks_done}/{entry.n_chunks_total} chunks"
        print(f"{entry.namespace}/{entry.key[:12]}  {entry.size_bytes / 2**20:8.1f} MiB  {state:>12}  "
              f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(entry.modified))}  {entry.description}")
    return 0


# ---------------------------------------------------------------- benchmark

def text_trim_benchmark(quick: bool = False) -> dict:
    """Time CLIP's text tower on WordNet noun prompts, full 77 tokens against trimmed, same batches.

    ViT-B-32 with random weights (the paper's architecture; timing does not depend on the weights),
    batches of 256 prompts ("itap of a {}." on randomly drawn nouns), CPU unless CUDA is present.
    """
    import torch

    from .corpora import wordnet_nouns

    torch.manual_seed(0)
    clip = load_clip("ViT-B-32", None, "auto")
    words = wordnet_nouns().words
    n_batches, batch_size = (1, 256) if quick else (4, 256)
    drawn = np.random.default_rng(0).choice(len(words), n_batches * batch_size, replace=False)
    tokens = clip.tokenizer([TAC_TEMPLATES[0].format(word) for word in words[drawn]]).to(clip.device)
    # encode_texts also sorts texts by length, so that each trimmed batch is as short as its texts
    by_length = torch.argsort(tokens.argmax(dim=-1), stable=True)
    timings, outputs = {}, {}
    with torch.inference_mode():
        for name, encode, order in (("full", clip.model.encode_text, slice(None)),
                                    ("trimmed", lambda t: encode_text_trimmed(clip.model, t), slice(None)),
                                    ("sorted", lambda t: encode_text_trimmed(clip.model, t), by_length)):
            encode(tokens[:8])  # warm-up
            start = time.perf_counter()
            outputs[name] = torch.cat([encode(batch) for batch in tokens[order].split(batch_size)]).float()
            if clip.device.type == "cuda":
                torch.cuda.synchronize()
            timings[name] = time.perf_counter() - start
    lengths = (tokens.argmax(dim=-1) + 1).float()
    return {"text_trim_speedup": round(timings["full"] / timings["trimmed"], 2),
            "text_trim_max_abs_diff": float((outputs["full"] - outputs["trimmed"]).abs().max()),
            "text_trim_sorted_speedup": round(timings["full"] / timings["sorted"], 2),
            "text_trim_prompts": len(tokens), "text_trim_batch_size": batch_size,
            "text_trim_full_s": round(timings["full"], 3), "text_trim_trimmed_s": round(timings["trimmed"], 3),
            "text_trim_mean_tokens": round(float(lengths.mean()), 1), "text_trim_device": clip.device.type}
