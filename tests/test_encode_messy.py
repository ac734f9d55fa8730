"""``python -m cae_core encode`` on a messy image folder, as a user runs it, and its one-line refusals.

The folder mixes real CIFAR-10 images with files that cannot be encoded (empty, truncated, text named .jpg),
clutter (.DS_Store), a non-ASCII name, a deeply nested image and a symlink leaving the folder. The bundle must
hold exactly the good images and the output must name each bad file with its reason. ~20 s (one
random-weight CLIP encode in a subprocess).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from cae_core.inputs.bundle import load_bundle
from cae_core.cli import main

CLASSES = ("airplane", "automobile")
NON_ASCII = "été-ünïcødé-飛行機.jpg"
NESTED = "deep/er/and/deeper/still/nested.jpg"


@pytest.fixture
def texts(tmp_path):
    nouns = tmp_path / "nouns.txt"
    nouns.write_text("airplane\ncar\nbird\n")
    captions = tmp_path / "captions.txt"
    captions.write_text("a plane in the sky\na red car on a road\nan airliner on the runway\n")
    return nouns, captions


@pytest.fixture
def messy_folder(tmp_path, shared_data):
    """(root, good image ids, {bad image id: expected start of its reason})."""
    cifar = shared_data / "images" / "cifar10-test"
    root = tmp_path / "messy"
    good = []
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(3):
            shutil.copy(cifar / name / f"{i:04d}.jpg", root / name / f"{i:04d}.jpg")
            good.append(f"{name}/{i:04d}.jpg")
    plane = root / "airplane"
    shutil.copy(cifar / "airplane" / "0003.jpg", plane / NON_ASCII)
    (plane / NESTED).parent.mkdir(parents=True)
    shutil.copy(cifar / "airplane" / "0004.jpg", plane / NESTED)
    good += [f"airplane/{NON_ASCII}", f"airplane/{NESTED}"]

    (plane / "empty.jpg").write_bytes(b"")
    whole = (cifar / "airplane" / "0005.jpg").read_bytes()
    (plane / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (plane / "notes.jpg").write_text("this is not a picture\n")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    (plane / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(cifar / "automobile" / "0005.jpg", outside / "elsewhere.jpg")
    (root / "automobile" / "link.jpg").symlink_to(outside / "elsewhere.jpg")
    bad = {"airplane/empty.jpg": "empty file", "airplane/truncated.jpg": "truncated or corrupt",
           "airplane/notes.jpg": "not an image", "automobile/link.jpg": "symlink outside source"}
    return root, good, bad


def test_encode_a_messy_folder_keeps_exactly_the_good_images(messy_folder, texts, clip_model_name,
                                                            clip_checkpoint, fresh_cache, tmp_path):
    root, good, bad = messy_folder
    nouns, captions = texts
    out = tmp_path / "messy.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "cae_core", "encode", "--images", str(root), "--model", clip_model_name,
         "--pretrained", str(clip_checkpoint), "--nouns", str(nouns), "--captions", str(captions),
         "--templates", "1", "--device", "cpu", "--batch-size", "4", "--out", str(out)],
        env=dict(os.environ), capture_output=True, encoding="utf-8", errors="replace", timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output

    bundle = load_bundle(out)
    assert sorted(bundle.image_ids.tolist()) == sorted(good)
    assert bundle.image_embeddings.shape[0] == len(good)
    assert [bundle.label_name(label) for label in bundle.labels] == [i.split("/")[0] for i in bundle.image_ids]
    assert bundle.metadata["n_skipped"] == len(bad)

    assert f"encoded {len(good)} images, 3 nouns, 3 captions" in proc.stdout
    assert f"skipped {len(bad)} file(s):" in proc.stdout
    listed = [line.strip() for line in proc.stdout.splitlines() if line.startswith("  ")]
    for image_id, reason in bad.items():
        assert any(line.startswith(f"{image_id}: {reason}") for line in listed), (image_id, listed)
    assert len(listed) == len(bad), listed  # .DS_Store and the like are clutter, ignored without a word
    assert "elsewhere" not in output  # the link's target is not read


@pytest.mark.parametrize("case", ["missing folder", "empty folder", "unknown model"])
def test_encode_refusals_exit_2_with_one_line(case, shared_data, texts, tmp_path, fresh_cache, capsys):
    nouns, captions = texts
    images = {"missing folder": tmp_path / "no-such-folder",
              "empty folder": tmp_path / "empty",
              "unknown model": shared_data / "images" / "cifar10-test"}[case]
    (tmp_path / "empty").mkdir()
    model = "NoSuchModel" if case == "unknown model" else "ViT-S-32-alt"
    code = main(["encode", "--images", str(images), "--limit", "2", "--model", model, "--pretrained", "none.pt",
                 "--nouns", str(nouns), "--captions", str(captions), "--device", "cpu",
                 "--out", str(tmp_path / "out.npz")])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    expected = {"missing folder": "no such folder or archive", "empty folder": "no images found",
                "unknown model": "unknown open_clip model 'NoSuchModel'"}[case]
    assert expected in err[0]
    assert not (tmp_path / "out.npz").exists()
