"""Demos found under CAE_DATA_DIR/embeddings, the ``demo`` command, and the encoding presets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cae_core import planted_bundle, save_bundle
from cae_core.errors import CaeError
from cae_core.cli import _apply_preset, build_parser, main
from cae_core.inputs import PRESETS, find_demos, load_demo
from cae_core.inputs.corpora import imagenet_nouns
from cae_core.inputs.presets import EncodeRates, estimate, measure_rates
from cae_core.inputs.sources import open_image_source
from cifar_data import CIFAR

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def data_folder(tmp_path):
    """A data folder with one bundle whose pictures lie beside it (relative image_root) and one bad file."""
    demo = tmp_path / "embeddings" / "tiny"
    (demo / "images").mkdir(parents=True)
    bundle = planted_bundle(n_images=40, n_classes=4, dim=16, n_nouns=20, n_captions=20)
    bundle.metadata.update(image_root="images", model="ViT-X", pretrained="somewhere")
    save_bundle(bundle, demo / "tiny.npz")
    (tmp_path / "embeddings" / "broken.npz").write_bytes(b"not a zip")
    return tmp_path


def test_demos_are_found_from_headers_and_a_relative_image_root_follows_the_bundle(data_folder, tmp_path):
    demos = {demo.name: demo for demo in find_demos(data_folder)}
    assert set(demos) == {"tiny", "planted"}  # the broken file is passed over
    tiny = demos["tiny"]
    assert (tiny.n_images, tiny.n_classes, tiny.n_nouns, tiny.n_captions) == (40, 4, 20, 20)
    assert tiny.has_pictures and tiny.synthetic and tiny.model == "ViT-X (somewhere)"  # planted: flagged
    assert demos["planted"].synthetic and demos["planted"].path is None
    # bundle and pictures moved together: the root still resolves beside the bundle
    moved = tmp_path / "moved"
    moved.mkdir()
    (data_folder / "embeddings").rename(moved / "embeddings")
    bundle, root, demo = load_demo("tiny", moved)
    assert root == moved / "embeddings" / "tiny" / "images" and bundle.n_images == 40
    with pytest.raises(CaeError, match="no demo called 'nope'"):
        load_demo("nope", moved)


def test_listing_demos_builds_no_planted_bundle_and_the_listing_matches_the_built_one(data_folder, monkeypatch):
    from cae_core.inputs import demos as demos_module

    real = demos_module.planted_bundle
    monkeypatch.setattr(demos_module, "planted_bundle", lambda **kwargs: pytest.fail("listing built the bundle"))
    listed = {demo.name: demo for demo in find_demos(data_folder)}["planted"]
    monkeypatch.setattr(demos_module, "planted_bundle", real)
    bundle, root, opened = load_demo("planted", data_folder)
    assert opened == listed and root is None
    assert (listed.n_images, listed.n_classes, listed.n_nouns, listed.n_captions) == (
        bundle.n_images, len(bundle.class_names), len(bundle.nouns), len(bundle.captions))
    assert listed.model == bundle.metadata["model"]


def test_demo_command_prints_the_table_and_named_clusters(capsys):
    assert main(["demo", "--name", "planted", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| cae " in out and "| clip-kmeans " in out and "synthetic" in out
    assert "cae's clusters" in out and "noun " in out


def test_presets_fill_only_what_is_not_given():
    parser = build_parser()
    quick = parser.parse_args(["encode", "--images", "x", "--out", "o.npz", "--preset", "quick", "--templates", "3"])
    _apply_preset(quick)
    assert (quick.limit, quick.nouns, quick.templates, quick.captions, quick.max_captions) == \
        (1000, "imagenet", 3, "flickr8k", 5000)
    plain = parser.parse_args(["encode", "--images", "x", "--out", "o.npz"])
    _apply_preset(plain)  # no preset: the paper's banks, all images, all captions
    assert (plain.limit, plain.nouns, plain.templates, plain.captions, plain.max_captions) == \
        (None, "wordnet", 7, "flickr30k", None)


def test_imagenet_nouns_ship_with_torchvision():
    bank = imagenet_nouns()
    assert len(bank) == 1000 and "goldfish" in bank.words.tolist()


def test_an_estimate_scales_measured_rates_by_the_work():
    rates = EncodeRates(images=10.0, noun_prompts=100.0, captions=50.0, device="cpu")
    found = estimate(PRESETS["quick"], 1000, 1000, 5000, rates)
    assert found.seconds == pytest.approx(1000 / 10 + 1000 / 100 + 5000 / 50)


def test_rates_are_measured_on_this_machine(clip_model):
    if not CIFAR.is_dir():
        pytest.skip(f"the shared CIFAR-10 images are not at {CIFAR}")
    source = open_image_source(str(CIFAR), limit=40)
    rates = measure_rates(clip_model, source, ["a photo of a dog"] * 20, ["a dog runs on the grass"] * 20)
    assert all(np.isfinite(value) and value > 0 for value in (rates.images, rates.noun_prompts, rates.captions))


def test_dataset_page_preset_sets_the_encoding_widgets():
    if not CIFAR.is_dir():
        pytest.skip(f"the shared CIFAR-10 images are not at {CIFAR}")
    at = AppTest.from_file(str(REPO / "pages" / "1_Dataset.py"), default_timeout=120).run()
    at.radio(key="preset").set_value("quick").run()
    at.selectbox(key="shared-set").set_value("cifar10-test").run()
    assert not at.exception and not at.warning  # no widget was given a value twice
    assert at.number_input(key="limit").value == 1000 and at.number_input(key="max-captions").value == 5000
    assert at.radio(key="nouns-bank").value == "imagenet" and at.slider(key="templates").value == 1
    assert at.radio(key="captions-bank").value == "flickr8k"
