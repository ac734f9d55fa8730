"""Decoding image files: RGB, EXIF orientation applied, and a clear reason for every file that fails."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..progress import Progress, no_progress
from .sources import ImageLoadError, ImageSource, SkippedFile


def load_image(path: Path) -> Image.Image:
    """Decode an image file fully and return it as RGB.

    Greyscale, CMYK, palette, 16-bit and transparent images are converted (transparency onto
    white); EXIF orientation is applied. Pillow's decompression-bomb limit stays on and its
    warning counts as an error; truncated files are not patched up.

    Raises
    ------
    ImageLoadError
        With a short ``reason`` such as "empty file", "decompression bomb" or "truncated or corrupt".
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                return _to_rgb(ImageOps.exif_transpose(image))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageLoadError(path, "decompression bomb") from None
    except UnidentifiedImageError:
        reason = "empty file" if path.stat().st_size == 0 else "not an image or an unsupported format"
        raise ImageLoadError(path, reason) from None
    except PermissionError:
        raise ImageLoadError(path, "permission denied") from None
    except FileNotFoundError:
        raise ImageLoadError(path, "file not found") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # Pillow reports damaged data through all of these, e.g. OSError "image file is truncated".
        raise ImageLoadError(path, f"truncated or corrupt ({error})") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of a decoded image of any mode."""
    if image.mode == "F" or image.mode.startswith("I"):
        # Wide greyscale: convert() clips values to 255 instead of rescaling them.
        values = np.asarray(image, dtype=np.float64)
        top = values.max() if image.mode == "F" else 65535.0
        image = Image.fromarray(np.clip(values * (255.0 / (top or 1.0)), 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")


def validate_images(source: ImageSource,
                    progress: Progress | None = None) -> ImageSource:
    """Decode every image once and move those that fail from ``records`` to ``skipped``.

    ``progress(stage, fraction, message)`` is called as the check advances.
    """
    report = progress or no_progress
    total = len(source.records)
    good, bad = [], []
    step = max(1, total // 100)
    report("checking images", 0.0, f"checking {total} images")
    for index, record in enumerate(source.records, start=1):
        try:
            load_image(record.path)
            good.append(record)
        except ImageLoadError as error:
            bad.append(SkippedFile(record.image_id, error.reason))
        if index % step == 0 or index == total:
            report("checking images", index / total, f"{index}/{total} images checked")
    return replace(source, records=good, skipped=source.skipped + bad)
