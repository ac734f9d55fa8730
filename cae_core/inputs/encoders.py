"""CLIP encoders (open_clip): images through a DataLoader, texts through a trimmed text tower; both cached.

CLIP's tokenizer pads every text to 77 tokens. Under the text tower's causal mask, the feature pooled
at a text's end-of-text token depends only on the tokens before it, so running a batch only up to its
longest real sequence gives the same features for a fraction of the work (``encode_text_trimmed``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .bundle import has_random_weights
from .cache import ChunkedStore, file_fingerprint, texts_digest
from ..device import resolve_device
from .distributed import Shard
from ..errors import CaeError
from ..progress import Progress
from .images import load_image
from .sources import ImageLoadError, ImageSource, SkippedFile

logger = logging.getLogger(__name__)

_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
# prompts per cache chunk: an interruption loses at most this much work
TEXT_CHUNK_PROMPTS = 8192
IMAGE_CHUNK_ROWS = 1024


@dataclass
class ClipModel:
    """An open_clip model ready to encode, with what identifies its weights for the cache.

    ``checkpoint_fingerprint`` is ``"tag:<tag>"`` or ``"file:<path>:<size>:<mtime_ns>"``; None for random
    weights, which are never cached (two random initialisations differ).
    """

    model: torch.nn.Module
    preprocess: Callable
    tokenizer: Callable
    device: torch.device
    model_name: str
    pretrained: str | None
    checkpoint_fingerprint: str | None

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def cache_parts(self) -> dict:
        """What every cached embedding of this model depends on."""
        return {"model": self.model_name, "checkpoint": self.checkpoint_fingerprint, "dtype": str(self.dtype)}


def load_clip(model_name: str = "ViT-B-32", pretrained: str | None = "openai", device: str = "auto") -> ClipModel:
    """Create an open_clip model from a pretrained tag (downloaded by open_clip) or a local checkpoint file.

    ``pretrained=None`` gives random weights (tests, benchmarks). CUDA runs in fp16, the CPU in fp32.
    Every failure (unknown model or tag, missing file, download impossible offline, checkpoint of
    another architecture) is a one-line ``CaeError`` saying what to do.
    """
    import open_clip

    torch_device = resolve_device(device)
    if model_name not in open_clip.list_models():
        raise CaeError(f"unknown open_clip model {model_name!r}; valid names include ViT-B-32, ViT-B-16, ViT-L-14, "
                       "RN50 and ViT-S-32 (see open_clip.list_models())")
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained is None:
        fingerprint = None
    elif Path(pretrained).expanduser().is_file():
        pretrained = str(Path(pretrained).expanduser().resolve())
        fingerprint = "file:" + ":".join(map(str, file_fingerprint(pretrained)))
    elif pretrained in tags:
        fingerprint = f"tag:{pretrained}"
    elif os.sep in pretrained or pretrained.endswith(_CHECKPOINT_SUFFIXES):
        raise CaeError(f"checkpoint file not found: {pretrained}")
    else:
        raise CaeError(f"unknown pretrained tag {pretrained!r} for {model_name} (known: {', '.join(tags) or 'none'}); "
                       "or pass --pretrained /path/to/checkpoint.pt")
    precision = "fp16" if torch_device.type == "cuda" else "fp32"
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained, device=torch_device, precision=precision)
    except Exception as error:  # open_clip wraps download and loading failures in assorted types
        raise CaeError(_load_failure(error, model_name, pretrained, torch_device,
                                     bool(fingerprint and fingerprint.startswith("tag:")))) from error
    model.eval()
    return ClipModel(model, preprocess, open_clip.get_tokenizer(model_name), torch_device, model_name,
                     pretrained, fingerprint)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:200]}" if text else type(error).__name__


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the exceptions it was raised from or during (open_clip and the hub wrap them)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _network_failure(error: BaseException) -> BaseException | None:
    """The cause of ``error`` that is a failure to reach the hub or the download site (no connection, offline
    mode, a timeout), or None."""
    import urllib.error

    network_types = (urllib.error.URLError, ConnectionError, TimeoutError)
    try:
        import requests

        network_types += (requests.ConnectionError, requests.Timeout)
    except ImportError:
        pass
    try:
        from huggingface_hub import errors as hub_errors

        network_types += (hub_errors.LocalEntryNotFoundError, hub_errors.OfflineModeIsEnabled)
    except (ImportError, AttributeError):
        pass
    return next((cause for cause in _causes(error) if isinstance(cause, network_types)), None)


def _load_failure(error: Exception, model_name: str, pretrained: str, device: torch.device, tag: bool) -> str:
    """The one-line reason a pretrained tag or a checkpoint file did not load, with the real cause named:
    the network, the GPU, the disk or a corrupt or mismatched file each ask for something different."""
    what = f"the {pretrained!r} weights of {model_name}" if tag else f"the checkpoint {pretrained}"
    cause = _first_line(error)
    network = _network_failure(error) if tag else None
    if network is not None:
        return (f"cannot download {what}: the network failed ({_first_line(network)}); download the checkpoint "
                "where there is internet and pass --pretrained /path/to/checkpoint.pt")
    if any(isinstance(e, torch.OutOfMemoryError) for e in _causes(error)) or \
            (device.type == "cuda" and "CUDA" in str(error)):
        return f"{what} did not load on {device} ({cause}); free the GPU or rerun with --device cpu"
    disk = next((e for e in _causes(error) if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT,
                                                                                     errno.EACCES, errno.EROFS)), None)
    if disk is not None:
        return (f"cannot store {what} ({cause}); free disk space or make {disk.filename or 'the download folder'} "
                "writable (HF_HOME sets the hub's cache)")
    if tag:
        return (f"{what} were fetched but did not load ({cause}); the downloaded file may be corrupt: delete it "
                "from the hub's cache (HF_HOME) and retry, or pass --pretrained /path/to/checkpoint.pt")
    return f"{what} does not load into {model_name}: {cause}"


# ---------------------------------------------------------------- running a batch

def _split_on_oom(fn: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
    """``fn(batch)``; on GPU out-of-memory, the two halves one after the other (recursively)."""
    try:
        return fn(batch)
    except torch.OutOfMemoryError:
        if len(batch) <= 1:
            raise CaeError("the GPU ran out of memory for a single item; rerun with --device cpu") from None
        torch.cuda.empty_cache()
        half = len(batch) // 2
        return torch.cat([_split_on_oom(fn, batch[:half]), _split_on_oom(fn, batch[half:])])


def _normalized(features: torch.Tensor) -> np.ndarray:
    features = features.float()
    return torch.nn.functional.normalize(features, dim=-1).cpu().numpy()


def _fill_and_read(store: ChunkedStore, batches: Callable[[np.ndarray], Iterator[dict[str, np.ndarray]]],
                   stage: str, what: str, shard: Shard | None = None) -> dict[str, np.ndarray]:
    """Compute the store's missing chunks from ``batches(rows)`` under its lock, then read it whole.

    With a ``shard``, this worker computes its share of the missing chunks and waits for the other
    workers' shares before reading.
    """
    if shard is None:
        with store.locked():
            store.fill(batches(store.missing_rows()))
    else:
        with shard.stage(stage):
            with store.locked(shared=True):
                mine = shard.owned(store.missing_chunks())
                rows = store.rows_of(mine)
                store.fill(batches(rows), mine)
            shard.say(f"{stage}: encoded {len(mine)} of {store.n_chunks} chunks ({len(rows)} of {store.n_rows} "
                      f"{what})")
        if store.missing_chunks():
            raise CaeError(f"the cache chunks of the other torchrun workers are not in {store.path.parent}: "
                           "set CAE_CACHE_DIR to a folder all of them share")
    logger.info("%s: %d chunk(s) from the cache, %d computed", stage, store.chunks_loaded, store.chunks_computed)
    return store.read()


def _report(progress: Progress | None, stage: str, done: int, total: int, what: str) -> None:
    if progress is not None:
        progress(stage, done / total if total else 1.0, f"{done}/{total} {what}")


# ---------------------------------------------------------------- texts

def supports_text_trim(model: torch.nn.Module) -> bool:
    """Whether ``encode_text_trimmed`` is exact for ``model``: open_clip's CLIP class with a causal
    mask, pooling at the end-of-text token."""
    import open_clip

    return (isinstance(model, open_clip.CLIP) and getattr(model, "attn_mask", None) is not None
            and model.text_pool_type in ("argmax", "eos"))


def encode_text_trimmed(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(tokens)`` computed on ``tokens[:, :L]``, L the longest real length in the batch.

    tokens (B, 77) int -> features (B, d), unnormalised. Exact for models where ``supports_text_trim``:
    the causal mask keeps positions ≤ the end-of-text token from seeing the padding after it, so cutting
    the padding (with the positional embedding and the mask cut to L) changes nothing that is pooled.
    """
    from open_clip.transformer import text_global_pool

    if model.text_pool_type == "argmax":  # the end-of-text token has the highest id
        ends = tokens.argmax(dim=-1)
    else:
        ends = (tokens == model.text_eos_id).int().argmax(dim=-1)
    length = int(ends.max()) + 1
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=model.text_eos_id)
    if isinstance(model.text_projection, torch.nn.Linear):
        return model.text_projection(x)
    return x if model.text_projection is None else x @ model.text_projection


def _text_batches(clip: ClipModel, words: np.ndarray, templates: Sequence[str] | None, batch_size: int,
                  trim: bool, progress: Progress | None, stage: str) -> Iterator[dict[str, np.ndarray]]:
    """Yield {"embeddings": (b, d)} for consecutive slices of ``words``: one prompt per template, each
    prompt's feature normalised, averaged over the templates, normalised again."""
    n_templates = len(templates) if templates else 1
    step = max(1, batch_size // n_templates)  # words per forward pass: batch_size prompts
    encode = (lambda t: encode_text_trimmed(clip.model, t)) if trim and supports_text_trim(clip.model) \
        else clip.model.encode_text
    for start in range(0, len(words), step):
        chunk = words[start:start + step]
        prompts = [template.format(word) for word in chunk for template in templates] if templates else list(chunk)
        with torch.inference_mode():
            features = _split_on_oom(encode, clip.tokenizer(prompts).to(clip.device))
        features = _normalized(features).reshape(len(chunk), n_templates, -1).mean(axis=1)
        yield {"embeddings": features / np.linalg.norm(features, axis=1, keepdims=True)}
        _report(progress, stage, start + len(chunk), len(words), "texts")


def encode_texts(clip: ClipModel, texts: Sequence[str], batch_size: int = 256, templates: Sequence[str] | None = None,
                 trim: bool = True, progress: Progress | None = None, cache: bool = True, stage: str = "texts",
                 chunk_rows: int | None = None, shard: Shard | None = None) -> np.ndarray:
    """L2-normalised text embeddings, (len(texts), d) float32.

    With ``templates`` ("{}" marks the text), each text's embedding is the normalised mean of its
    normalised prompt embeddings (CLIP's prompt ensembling). Identical texts are encoded once; texts run
    sorted by length so trimmed batches stay short. Results are cached in chunks of ``chunk_rows`` texts;
    ``shard``: this torchrun worker's share of them (see ``distributed``).
    """
    texts = np.asarray(texts, dtype=object).astype(str)
    if not len(texts):
        raise CaeError(f"no {stage} to encode")
    unique, inverse = np.unique(texts, return_inverse=True)
    order = np.argsort(np.char.str_len(unique), kind="stable")
    words = unique[order]
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    templates = list(templates) if templates else None
    chunk_rows = chunk_rows or max(1, TEXT_CHUNK_PROMPTS // len(templates or [None]))

    def batches(rows: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
        return _text_batches(clip, words[rows], templates, batch_size, trim, progress, stage)

    if cache and clip.checkpoint_fingerprint is not None:
        store = ChunkedStore({"kind": "texts", **clip.cache_parts(), "templates": templates,
                              "texts": texts_digest(words)}, len(words), chunk_rows, namespace="embeddings",
                             description=f"{stage}: {len(words)} texts, {clip.model_name}")
        embeddings = _fill_and_read(store, batches, stage, "texts", shard)["embeddings"]
    else:
        embeddings = np.concatenate([batch["embeddings"] for batch in batches(np.arange(len(words)))])
    _report(progress, stage, len(words), len(words), "texts")
    return embeddings[position[inverse]].astype(np.float32)


# ---------------------------------------------------------------- images

class _ImageFiles(Dataset):
    """Decoded and preprocessed images; an unreadable file gives (None, reason) instead of failing."""

    def __init__(self, paths: Sequence[Path], preprocess: Callable) -> None:
        self.paths = list(paths)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, str]:
        try:
            return self.preprocess(load_image(self.paths[index])), ""
        except ImageLoadError as error:
            return None, error.reason


def _collate(items: list[tuple[torch.Tensor | None, str]]) -> tuple[torch.Tensor | None, list[str]]:
    tensors = [tensor for tensor, _ in items if tensor is not None]
    return (torch.stack(tensors) if tensors else None), [reason for _, reason in items]


def _image_batches(clip: ClipModel, paths: Sequence[Path], batch_size: int, num_workers: int,
                   progress: Progress | None) -> Iterator[dict[str, np.ndarray]]:
    """Yield {"embeddings": (b, d) normalised, NaN rows for unreadable files; "errors": (b,) reasons or ""}."""
    loader = DataLoader(_ImageFiles(paths, clip.preprocess), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=_collate, pin_memory=clip.device.type == "cuda")
    done = 0
    for images, reasons in loader:
        ok = np.array([reason == "" for reason in reasons])
        embeddings = np.full((len(reasons), clip.model.visual.output_dim), np.nan, dtype=np.float32)
        if images is not None:
            with torch.inference_mode():
                features = _split_on_oom(clip.model.encode_image,
                                         images.to(clip.device, dtype=clip.dtype, non_blocking=True))
            embeddings[ok] = _normalized(features)
        done += len(reasons)
        yield {"embeddings": embeddings, "errors": np.array(reasons, dtype=str)}
        _report(progress, "images", done, len(paths), "images")


def encode_images(clip: ClipModel, image_source: ImageSource, batch_size: int = 64, progress: Progress | None = None,
                  cache: bool = True, chunk_rows: int | None = None, num_workers: int | None = None,
                  shard: Shard | None = None) -> tuple[np.ndarray, np.ndarray, list[SkippedFile]]:
    """Encode every image of ``image_source`` (decoding in DataLoader workers, so the model never waits).

    Returns ``(embeddings, kept_index, skipped)``: (n_kept, d) float32 L2-normalised; (n_kept,) indices
    into ``image_source.records``; the files that could not be decoded, with the reason. The cache key
    covers the model, the checkpoint, the preprocessing and every file's path, size and mtime. Cached in
    chunks of ``chunk_rows`` images (default 1024); ``shard``: this torchrun worker's share of them.
    """
    records = image_source.records
    if not records:
        raise CaeError(f"no images to encode in {image_source.name}")
    paths = [record.path for record in records]
    if num_workers is None:  # worker start-up costs more than it saves on a couple of batches
        # the cores this process may use (taskset, containers), not the machine's: more workers only thrash
        num_workers = min(4, len(os.sched_getaffinity(0))) if len(paths) > 2 * batch_size else 0

    def batches(rows: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
        return _image_batches(clip, [paths[i] for i in rows], batch_size, num_workers, progress)

    if cache and clip.checkpoint_fingerprint is not None:
        files = hashlib.sha256(json.dumps([file_fingerprint(path) if path.exists() else [str(path)]
                                           for path in paths]).encode()).hexdigest()
        store = ChunkedStore({"kind": "images", **clip.cache_parts(), "preprocess": repr(clip.preprocess),
                              "files": files}, len(paths), chunk_rows or IMAGE_CHUNK_ROWS, namespace="embeddings",
                             description=f"images: {len(paths)} of {image_source.name}, {clip.model_name}")
        arrays = _fill_and_read(store, batches, "images", "images", shard)
    else:
        parts = list(batches(np.arange(len(paths))))
        arrays = {name: np.concatenate([part[name] for part in parts]) for name in ("embeddings", "errors")}
    _report(progress, "images", len(paths), len(paths), "images")
    kept = np.flatnonzero(arrays["errors"] == "")
    skipped = [SkippedFile(records[i].image_id, str(arrays["errors"][i]))
               for i in np.flatnonzero(arrays["errors"] != "")]
    return arrays["embeddings"][kept].astype(np.float32), kept, skipped


def text_model_of(metadata: dict) -> tuple[str, str | None]:
    """``(model, pretrained)`` for ``encoders.load_clip``: the CLIP model that made a bundle, from the
    metadata ``encode_dataset`` writes. ``pretrained`` is a tag, a checkpoint file, or None for
    random weights (an initialisation that was not saved cannot be reproduced).

    Raises ``CaeError`` when the metadata names no model (a bundle made elsewhere).
    """
    model = metadata.get("model")
    if not model or not isinstance(model, str):
        raise CaeError("the bundle's metadata names no CLIP model (it was not made by `cae encode`)")
    if has_random_weights(metadata):
        return model, None
    pretrained = str(metadata["pretrained"])
    # the fingerprint keeps the checkpoint's absolute path; "pretrained" is the path as it was typed
    fingerprint = str(metadata.get("checkpoint") or "")
    if fingerprint.startswith("file:") and not Path(pretrained).expanduser().is_file():
        recorded = fingerprint[len("file:"):].rsplit(":", 2)[0]
        if Path(recorded).is_file():
            return model, recorded
    return model, pretrained


def checkpoint_changed(metadata: dict, fingerprint: str | None) -> bool:
    """Whether the checkpoint file loaded now differs (size or modification time) from the one that
    made the bundle; tags and random weights never count as changed."""
    recorded = metadata.get("checkpoint")
    return bool(recorded and fingerprint and str(recorded).startswith("file:") and recorded != fingerprint)
