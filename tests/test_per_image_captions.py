"""SAC's per-image captions: a CSV of image_id,caption as the caption bank, bad rows reported and skipped,
every caption kept in the semantic space, and each image's own captions on the Correspondences page."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cae_core import CaeError, load_bundle, run_methods
from cae_core.cli import main
from cae_core.inputs.corpora import read_per_image_captions
from cae_core.method import Bank
from explorer.state import Workspace
from ot_reference import row_shares

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "3_Correspondences.py")
CSV = """image_id,caption
airplane/0000.jpg,A small plane on a runway.
airplane/0000.jpg,An aircraft seen from the side.
automobile/0000.jpg,A red car parked by the road.
nowhere/9999.jpg,An image that is not in the set.
bird/0000.jpg,
cat/0000.jpg,A cat,with a comma too many
"""


def test_bad_rows_are_reported_and_skipped(tmp_path):
    path = tmp_path / "captions.csv"
    path.write_text(CSV)
    found = read_per_image_captions(path, ["airplane/0000.jpg", "automobile/0000.jpg", "bird/0000.jpg",
                                           "cat/0000.jpg"])
    assert found.image_ids.tolist() == ["airplane/0000.jpg", "airplane/0000.jpg", "automobile/0000.jpg"]
    assert found.skipped == [("row 5", "unknown image id 'nowhere/9999.jpg'"), ("row 6", "empty caption"),
                             ("row 7", "more columns than the header")]
    (tmp_path / "bad.csv").write_text("id,text\n1,x\n")
    with pytest.raises(CaeError, match="header names the columns image_id and caption"):
        read_per_image_captions(tmp_path / "bad.csv", ["1"])


CLASSES = ("airplane", "automobile", "bird", "cat")


def small_image_folder(folder: Path, shared_data: Path) -> Path:
    """Three real CIFAR-10 pictures of each of four classes, ImageFolder layout."""
    for name in CLASSES:
        (folder / "images" / name).mkdir(parents=True)
        for k in range(3):
            shutil.copy(shared_data / "images" / "cifar10-test" / name / f"{k:04d}.jpg", folder / "images" / name)
    return folder / "images"


@pytest.fixture(scope="module")
def per_image_bundle(tmp_path_factory, clip_model_name, clip_checkpoint, shared_data):
    folder = tmp_path_factory.mktemp("per-image")
    images = small_image_folder(folder, shared_data)
    (folder / "captions.csv").write_text(CSV)
    (folder / "nouns.txt").write_text("airplane\ncar\nbird\ncat\ndeer\n")
    out = folder / "bundle.npz"
    code = main(["encode", "--images", str(images), "--model", clip_model_name, "--pretrained", str(clip_checkpoint), "--nouns", str(folder / "nouns.txt"),
                 "--captions", "per-image", str(folder / "captions.csv"), "--templates", "1", "--device", "cpu",
                 "--out", str(out)])
    assert code == 0
    return load_bundle(out)


def test_encode_ties_each_caption_to_its_image(per_image_bundle, capsys):
    bundle = per_image_bundle
    assert bundle.per_image_captions and len(bundle.captions) == 3
    first = int(np.flatnonzero(bundle.image_ids == "airplane/0000.jpg")[0])
    assert bundle.captions[bundle.captions_of(first)].tolist() == ["A small plane on a runway.",
                                                                   "An aircraft seen from the side."]
    # every per-image caption stays in the semantic space: they are the images' own text
    result = run_methods(bundle, ["cae"], 4)["cae"]
    assert sorted(result.semantic_space.captions.bank_index.tolist()) == [0, 1, 2]


def test_encode_reports_the_skipped_rows(per_image_bundle, capsys, tmp_path, clip_model_name, clip_checkpoint,
                                         shared_data):
    (tmp_path / "captions.csv").write_text(CSV)
    (tmp_path / "nouns.txt").write_text("airplane\ncar\n")
    images = small_image_folder(tmp_path, shared_data)
    assert main(["encode", "--images", str(images), "--model",
                 clip_model_name, "--pretrained", str(clip_checkpoint), "--nouns", str(tmp_path / "nouns.txt"),
                 "--captions", "per-image", str(tmp_path / "captions.csv"), "--templates", "1", "--device", "cpu",
                 "--out", str(tmp_path / "b.npz")]) == 0
    out = capsys.readouterr().out
    assert "captions.csv row 5: unknown image id 'nowhere/9999.jpg'" in out and "row 6: empty caption" in out


def test_correspondences_page_shows_an_images_own_captions(per_image_bundle):
    bundle = per_image_bundle
    ws = Workspace()
    ws.load(bundle, "per-image captions", None, random_weights=True)
    ws.set_results(run_methods(bundle, n_clusters=4))
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["workspace"] = ws
    at.session_state["correspondences-position"] = int(np.flatnonzero(bundle.image_ids == "airplane/0000.jpg")[0]) + 1
    at.run()
    assert not at.exception, [element.message for element in at.exception]
    own = next(frame.value for frame in at.dataframe if "mass from this image" in frame.value.columns)
    assert own["caption"].tolist() == ["A small plane on a runway.", "An aircraft seen from the side."]
    # each own caption's share of the image's transport mass: its entry in POT's plan row (all 3 captions
    # are selected, and 3 < the 10 top matches kept, so none is cut off)
    part = ws.results["cae"].aligned[Bank.CAPTIONS]
    image = int(np.flatnonzero(bundle.image_ids == "airplane/0000.jpg")[0])
    shares = row_shares(bundle.image_embeddings, part.selection.embeddings, ws.results["cae"].config.epsilon)
    position = [int(np.flatnonzero(part.selection.bank_index == row)[0]) for row in bundle.captions_of(image)]
    np.testing.assert_allclose(own["mass from this image"], shares[image, position], atol=1e-4)


def test_caption_command_writes_the_csv_that_encode_reads(tmp_path, shared_data, capsys):
    from open_clip import coca_model

    if not coca_model._has_transformers:
        pytest.skip("open_clip's CoCa generation needs transformers<4.56, which is not installed here")
    images = small_image_folder(tmp_path, shared_data)
    out = tmp_path / "captions.csv"
    assert main(["caption", "--images", str(images), "--pretrained", "random", "--device", "cpu",
                 "--max-tokens", "6", "--out", str(out)]) == 0
    assert "captioned 12 images" in capsys.readouterr().out
    found = read_per_image_captions(out, [f"{name}/{k:04d}.jpg" for name in CLASSES for k in range(3)])
    # random weights write meaningless text, possibly empty after the special tokens: those rows are skipped
    assert len(found.captions) + len(found.skipped) == 12
    assert all(reason == "empty caption" for _, reason in found.skipped)


def test_caption_command_says_how_when_generation_is_unavailable(tmp_path, shared_data, capsys, monkeypatch):
    from open_clip import coca_model

    monkeypatch.setattr(coca_model, "_has_transformers", False)
    images = small_image_folder(tmp_path, shared_data)
    assert main(["caption", "--images", str(images), "--pretrained", "random", "--device", "cpu",
                 "--out", str(tmp_path / "c.csv")]) == 2
    assert "pip install 'transformers<4.56'" in capsys.readouterr().err
    assert not (tmp_path / "c.csv").exists()
