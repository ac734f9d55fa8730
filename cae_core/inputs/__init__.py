"""Inputs of the method (paper steps 1-2): image sources, CLIP encoders (``encoders.py``, step 1), the
text banks (``corpora.py``, step 2), the on-disk cache, and the features bundle they produce
(``bundle.py``), which is what the method reads. ``synthetic.py`` plants bundles for tests."""

from .bundle import FeaturesBundle, has_random_weights, image_root_of, load_bundle, model_name, save_bundle
from .cache import cache_dir
from .corpora import TAC_TEMPLATES, flickr8k_captions, flickr30k_captions, noun_senses, wordnet_nouns
from .demos import DEFAULT_DEMO, PLANTED, Demo, default_demo, fetchable_demos, find_demos, load_demo
from .demo_sources import DEMO_SOURCES, DemoSource, fetch_demo
from .encode import EncodeReport, encode_dataset
from .presets import PRESETS, EncodePreset, estimate_presets
from .encoders import ClipModel, checkpoint_changed, encode_images, encode_texts, load_clip, text_model_of
from .archives import safe_extract_zip
from .images import load_image, validate_images
from .sources import BENCHMARKS, ImageLoadError, ImageSource, SkippedFile, allowed_roots, dataset_choices, \
    open_image_source, resolve_allowed_path
from .torchvision_sets import Benchmark
from .synthetic import planted_bundle

__all__ = [
    "BENCHMARKS", "Benchmark", "ClipModel", "DEFAULT_DEMO", "DEMO_SOURCES", "Demo", "default_demo", "DemoSource", "EncodePreset", "PLANTED", "PRESETS", "EncodeReport", "FeaturesBundle", "ImageLoadError", "ImageSource", "SkippedFile", "TAC_TEMPLATES",
    "allowed_roots", "cache_dir", "checkpoint_changed", "dataset_choices", "encode_dataset", "encode_images", "encode_texts", "estimate_presets", "fetch_demo", "fetchable_demos", "find_demos", "has_random_weights", "image_root_of", "load_demo", "model_name",
    "flickr30k_captions", "flickr8k_captions", "load_bundle", "load_clip", "load_image", "noun_senses",
    "open_image_source", "planted_bundle", "resolve_allowed_path", "safe_extract_zip", "save_bundle", "text_model_of", "validate_images", "wordnet_nouns",
]
