"""SAC's per-image captions written by a captioning model: open_clip's CoCa models, loaded like any CLIP
model (a tag downloaded where there is internet, or a local checkpoint file), write one caption per
image into the CSV that ``encode --captions per-image FILE`` reads."""

from __future__ import annotations

import csv
import io
import re

import torch

from ..errors import CaeError
from ..files import atomic_write_text
from ..progress import Progress, no_progress
from .encoders import ClipModel
from .images import load_image
from .sources import ImageLoadError, ImageSource, SkippedFile

CAPTIONING_MODELS = ("coca_ViT-B-32", "coca_ViT-L-14")  # open_clip's CoCa architectures with published weights
DEFAULT_CAPTIONER = ("coca_ViT-B-32", "mscoco_finetuned_laion2b_s13b_b90k")  # CoCa fine-tuned to write captions
CAPTION_TOKENS = (6, 77)  # CoCa's generate: longer than its 5-token minimum, within its 77-token context
_SPECIAL_TOKENS = re.compile(r"<\s*(start|end)_of_text\s*>")


def check_caption_options(batch_size: int, max_tokens: int) -> None:
    """``CaeError`` naming a batch size or caption length that ``generate_captions`` cannot use."""
    if batch_size < 1:
        raise CaeError(f"--batch-size must be positive, got {batch_size}")
    low, high = CAPTION_TOKENS
    if not low <= max_tokens <= high:
        raise CaeError(f"--max-tokens must be between {low} and {high} (CoCa's limits), got {max_tokens}")


def generate_captions(clip: ClipModel, source: ImageSource, batch_size: int = 16, max_tokens: int = 30,
                      progress: Progress | None = None) -> tuple[list[tuple[str, str]], list[SkippedFile]]:
    """One caption per image of ``source`` by ``clip`` (a CoCa model): ([(image_id, caption)], skipped files)."""
    import open_clip
    from open_clip import coca_model

    check_caption_options(batch_size, max_tokens)
    if not hasattr(clip.model, "generate"):
        raise CaeError(f"{clip.model_name} is not a CoCa model and writes no captions; use a CoCa model "
                       f"({', '.join(CAPTIONING_MODELS)})")
    if not coca_model._has_transformers:  # open_clip's own flag: its CoCa generation imports transformers
        raise CaeError("writing captions with open_clip's CoCa needs the transformers package (open_clip 3.3 "
                       "works with transformers<4.56): pip install 'transformers<4.56'; or write the "
                       "image_id,caption CSV with another captioning model")
    report = progress or no_progress
    rows, skipped = [], []
    records = source.records
    for start in range(0, len(records), batch_size):
        batch, ids = [], []
        for record in records[start:start + batch_size]:
            try:
                batch.append(clip.preprocess(load_image(record.path)))
                ids.append(record.image_id)
            except ImageLoadError as error:
                skipped.append(SkippedFile(record.image_id, error.reason))
        if batch:
            with torch.inference_mode():
                tokens = clip.model.generate(torch.stack(batch).to(clip.device, clip.dtype), seq_len=max_tokens)
            for image_id, row in zip(ids, tokens):
                text = _SPECIAL_TOKENS.sub(" ", open_clip.decode(row)).strip(" .")
                rows.append((image_id, " ".join(text.split())))
        report("captions", min(1.0, (start + batch_size) / len(records)), f"{len(rows)} images captioned")
    return rows, skipped


def captions_csv(rows: list[tuple[str, str]]) -> str:
    """The ``image_id,caption`` CSV that ``read_per_image_captions`` reads."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image_id", "caption"])
    writer.writerows(rows)
    return buffer.getvalue()


def write_captions(rows: list[tuple[str, str]], path) -> None:
    atomic_write_text(path, captions_csv(rows))
