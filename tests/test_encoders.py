"""CLIP encoders on a random-weight checkpoint of a real open_clip architecture."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch

from cae_core.inputs import encoders
from cae_core.inputs.corpora import TAC_TEMPLATES
from cae_core.inputs.encoders import encode_images, encode_text_trimmed, encode_texts, load_clip, supports_text_trim
from cae_core.errors import CaeError
from cae_core.inputs.sources import open_image_source

NOUNS = ["crane", "ice cream", "dog", "sea lion", "cat", "golden retriever", "airplane", "dog"]


class _NoModel(torch.nn.Module):
    """Stands in for the CLIP model where a test proves that no model work is done."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def encode_text(self, *args):
        raise AssertionError("the text tower ran")

    def encode_image(self, *args):
        raise AssertionError("the image tower ran")


def test_trimmed_text_tower_equals_full(clip_model):
    assert supports_text_trim(clip_model.model)
    texts = [template.format(noun) for noun in NOUNS for template in TAC_TEMPLATES[:2]]
    texts.append("a very long caption " * 6)  # longer than the others: trimming stops at the longest
    tokens = clip_model.tokenizer(texts)
    with torch.inference_mode():
        full = clip_model.model.encode_text(tokens)
        trimmed = encode_text_trimmed(clip_model.model, tokens)
        short = encode_text_trimmed(clip_model.model, tokens[:-1])
    assert torch.allclose(full, trimmed, atol=1e-5, rtol=1e-5)
    assert torch.allclose(full[:-1], short, atol=1e-5, rtol=1e-5)


def test_encode_texts_shapes_norms_and_duplicates(clip_model, fresh_cache):
    embeddings = encode_texts(clip_model, NOUNS, batch_size=16, templates=TAC_TEMPLATES)
    assert embeddings.shape == (len(NOUNS), clip_model.model.text_projection.shape[1])
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(embeddings[2], embeddings[-1])  # "dog" twice


def test_template_ensemble_is_normalised_mean(clip_model, fresh_cache):
    ensemble = encode_texts(clip_model, ["crane"], templates=TAC_TEMPLATES[:3], cache=False)
    prompts = encode_texts(clip_model, [t.format("crane") for t in TAC_TEMPLATES[:3]], cache=False)
    mean = prompts.mean(axis=0)
    np.testing.assert_allclose(ensemble[0], mean / np.linalg.norm(mean), atol=1e-5)


def test_trim_and_batching_do_not_change_results(clip_model, fresh_cache):
    reference = encode_texts(clip_model, NOUNS, batch_size=64, templates=TAC_TEMPLATES[:2], trim=False, cache=False)
    trimmed = encode_texts(clip_model, NOUNS, batch_size=4, templates=TAC_TEMPLATES[:2], cache=False)
    np.testing.assert_allclose(trimmed, reference, atol=1e-5)


def test_second_encoding_comes_from_the_cache(clip_model, fresh_cache, caplog):
    first = encode_texts(clip_model, NOUNS, batch_size=4, chunk_rows=3)
    no_model = dataclasses.replace(clip_model, model=_NoModel())
    assert no_model.cache_parts() == clip_model.cache_parts()  # same model, checkpoint and dtype: same entry
    with caplog.at_level(logging.INFO, logger="cae_core.inputs.encoders"):
        second = encode_texts(no_model, NOUNS, batch_size=4, chunk_rows=3)
    np.testing.assert_array_equal(first, second)
    assert "3 chunk(s) from the cache, 0 computed" in caplog.text


def test_encode_images_skips_unreadable_files(clip_model, shared_data, tmp_path, fresh_cache):
    source = open_image_source(str(shared_data / "images" / "cifar10-test"), limit=12)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    records = source.records + [dataclasses.replace(source.records[0], path=broken, image_id="broken.jpg")]
    source = dataclasses.replace(source, records=records)
    embeddings, kept, skipped = encode_images(clip_model, source, batch_size=8, chunk_rows=8)
    assert embeddings.shape == (12, clip_model.model.visual.output_dim)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(kept, np.arange(12))
    assert [item.image_id for item in skipped] == ["broken.jpg"] and skipped[0].reason
    again = encode_images(dataclasses.replace(clip_model, model=_NoModel()), source, batch_size=8, chunk_rows=8)
    np.testing.assert_array_equal(again[0], embeddings)
    assert again[2] == skipped
    uncached = encode_images(clip_model, source, batch_size=5, cache=False, num_workers=2)[0]
    np.testing.assert_allclose(uncached, embeddings, atol=1e-5)  # determinism, workers, other batches


def test_random_weights_are_never_cached(clip_model, fresh_cache):
    random_model = dataclasses.replace(clip_model, checkpoint_fingerprint=None)
    encode_texts(random_model, ["dog"])
    assert not fresh_cache.exists() or not any(fresh_cache.rglob("chunk-*"))


def test_out_of_memory_splits_the_batch():
    def fn(batch):
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return batch * 2

    batch = torch.arange(7.0)
    assert torch.equal(encoders._split_on_oom(fn, batch), batch * 2)


def test_load_errors_are_one_line(clip_checkpoint, clip_model_name, tmp_path):
    with pytest.raises(CaeError, match="ViT-B-32"):
        load_clip("ViT-Nope-99", str(clip_checkpoint), "cpu")
    with pytest.raises(CaeError, match="not found"):
        load_clip(clip_model_name, str(tmp_path / "missing.pt"), "cpu")
    with pytest.raises(CaeError, match="--pretrained /path/to/checkpoint.pt"):
        load_clip("ViT-B-32", "openai", "cpu")  # HF_HUB_OFFLINE=1: the download fails at once
    with pytest.raises(CaeError, match="does not load into ViT-S-32"):
        load_clip("ViT-S-32", str(clip_checkpoint), "cpu")
    with pytest.raises(CaeError, match="unknown pretrained tag"):
        load_clip("ViT-B-32", "no-such-tag", "cpu")
