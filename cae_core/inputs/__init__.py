"""Inputs of the method (paper steps 1-2): image sources, CLIP encoders (``encoders.py``, step 1), the
text banks (``corpora.py``, step 2), the on-disk cache, and the features bundle they produce
(``bundle.py``), which is what the method reads. ``synthetic.py`` plants bundles for tests."""

from .bundle import FeaturesBundle, load_bundle, save_bundle
from .cache import cache_dir
from .corpora import TAC_TEMPLATES, flickr8k_captions, flickr30k_captions, noun_senses, wordnet_nouns
from .encode import EncodeReport, encode_dataset
from .encoders import ClipModel, encode_images, encode_texts, load_clip
from .sources import BENCHMARKS, ImageSource, SkippedFile, allowed_roots, dataset_choices, load_image, \
    open_image_source, resolve_allowed_path
from .synthetic import planted_bundle

__all__ = [
    "BENCHMARKS", "ClipModel", "EncodeReport", "FeaturesBundle", "ImageSource", "SkippedFile", "TAC_TEMPLATES",
    "allowed_roots", "cache_dir", "dataset_choices", "encode_dataset", "encode_images", "encode_texts",
    "flickr30k_captions", "flickr8k_captions", "load_bundle", "load_clip", "load_image", "noun_senses",
    "open_image_source", "planted_bundle", "resolve_allowed_path", "save_bundle", "wordnet_nouns",
]
