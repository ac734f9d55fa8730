"""encode_dataset, the encode/cache commands, and an encoding killed half-way that resumes."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cae_core.inputs.bundle import load_bundle
from cae_core.cli import main
from cae_core.inputs.encode import encode_dataset

NOUNS = "cat\ndog\ncrane\nsea_lion\nairplane\nship\ntruck\nfrog\n"


@pytest.fixture
def text_files(tmp_path, shared_data):
    nouns = tmp_path / "nouns.txt"
    nouns.write_text(NOUNS)
    captions = tmp_path / "captions.txt"
    from cae_core.inputs.corpora import flickr8k_captions

    captions.write_text("\n".join(flickr8k_captions().captions[:40]))
    return nouns, captions


def test_encode_dataset_writes_a_complete_bundle(clip_model_name, clip_checkpoint, shared_data, text_files,
                                                 fresh_cache, tmp_path, caplog, capsys):
    nouns, captions = text_files
    out = tmp_path / "bundle.npz"
    argv = ["encode", "--images", str(shared_data / "images" / "cifar10-test"), "--limit", "10",
            "--model", clip_model_name, "--pretrained", str(clip_checkpoint), "--nouns", str(nouns),
            "--captions", str(captions), "--templates", "2", "--device", "cpu", "--batch-size", "16",
            "--out", str(out)]
    assert main(argv) == 0
    assert "encoded 10 images, 8 nouns, 40 captions" in capsys.readouterr().out
    bundle = load_bundle(out)
    assert bundle.image_embeddings.shape[0] == 10 and bundle.image_embeddings.dtype == np.float32
    for matrix in (bundle.image_embeddings, bundle.noun_embeddings, bundle.caption_embeddings):
        np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1, atol=1e-5)
    assert bundle.nouns.tolist()[3] == "sea lion" and len(bundle.captions) == 40
    names = [bundle.label_name(label) for label in bundle.labels]
    assert all(image_id.split("/")[0] == name for image_id, name in zip(bundle.image_ids, names))
    meta = bundle.metadata
    assert meta["model"] == clip_model_name and meta["checkpoint"].startswith("file:")
    assert meta["noun_templates"] == ["itap of a {}.", "a bad photo of the {}."]
    assert meta["nouns_corpus"] == "nouns.txt" and meta["captions_corpus"] == "captions.txt"

    with caplog.at_level(logging.INFO, logger="cae_core.inputs.encoders"):  # same inputs: no model work
        again, _ = encode_dataset(str(shared_data / "images" / "cifar10-test"), clip_model_name,
                                  str(clip_checkpoint), str(nouns), str(captions), "cpu", 16, 10, 2)
    assert caplog.text.count(" 0 computed") == 3
    np.testing.assert_allclose(again.caption_embeddings, bundle.caption_embeddings, atol=1e-6)

    assert main(["cache"]) == 0
    listing = capsys.readouterr().out
    assert "3 entries" in listing and "complete" in listing


def test_offline_tag_exits_2_with_one_line(shared_data, tmp_path, capsys, fresh_cache):
    code = main(["encode", "--images", str(shared_data / "images" / "cifar10-test"), "--limit", "2",
                 "--nouns", str(tmp_path / "n.txt"), "--captions", "flickr8k", "--out", str(tmp_path / "b.npz")])
    assert code == 2
    (tmp_path / "n.txt").write_text("cat\n")
    code = main(["encode", "--images", str(shared_data / "images" / "cifar10-test"), "--limit", "2",
                 "--nouns", str(tmp_path / "n.txt"), "--captions", "flickr8k", "--out", str(tmp_path / "b.npz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error:") and "--pretrained /path/to/checkpoint.pt" in err[-1]


_ENCODER = textwrap.dedent("""
    import os, signal, sys
    from cae_core.inputs.encoders import encode_texts, load_clip

    model, checkpoint, kill_at = sys.argv[1], sys.argv[2], float(sys.argv[3])

    def progress(stage, fraction, message):
        if fraction >= kill_at:  # killed mid-way, as by a crash or the OOM killer
            os.kill(os.getpid(), signal.SIGKILL)

    clip = load_clip(model, checkpoint, "cpu")
    texts = [f"caption number {i} of a dog" for i in range(48)]
    encode_texts(clip, texts, batch_size=4, chunk_rows=8, progress=progress)
""")


def test_killed_encoding_resumes_from_last_chunk(clip_model, clip_model_name, clip_checkpoint, fresh_cache,
                                                 caplog):
    env = dict(os.environ, CAE_CACHE_DIR=str(fresh_cache))
    proc = subprocess.run([sys.executable, "-c", _ENCODER, clip_model_name, str(clip_checkpoint), "0.5"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    from cae_core.inputs.encoders import encode_texts

    texts = [f"caption number {i} of a dog" for i in range(48)]
    with caplog.at_level(logging.INFO, logger="cae_core.inputs.encoders"):
        resumed = encode_texts(clip_model, texts, batch_size=4, chunk_rows=8)
    done = int(caplog.text.split(" chunk(s) from the cache")[0].split()[-1])
    assert 1 <= done < 6 and f"{6 - done} computed" in caplog.text  # only the missing chunks ran
    clean = encode_texts(clip_model, texts, batch_size=4, chunk_rows=8, cache=False)
    np.testing.assert_allclose(resumed, clean, atol=1e-6)
