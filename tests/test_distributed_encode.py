"""``encode`` under torchrun: workers share the chunks through the cache, and the bundle is the single run's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cae_core.cli import main
from cae_core.errors import CaeError
from cae_core.inputs.bundle import load_bundle
from cae_core.inputs.distributed import Shard, shard_from_env

REPO = Path(__file__).resolve().parents[1]

NOUNS = ["cat", "dog", "crane", "sea_lion", "airplane", "ship", "truck", "frog", "horse", "deer"]
CAPTIONS = [f"a photo of {count} {thing} on the grass" for count in ("one", "two", "three", "many")
            for thing in ("dogs", "cats", "birds")] + ["a red car", "an empty street at night"]
CHUNK_ROWS = 4  # 24 images in 6 chunks, 10 nouns in 3, 14 captions in 4: both workers get some of each
LIMIT_S = 300  # an upper bound for a run that takes seconds; only a hang reaches it


@pytest.fixture
def inputs(tmp_path):
    """24 small noise pictures in two class folders, and noun and caption files."""
    rng = np.random.default_rng(0)
    for index in range(24):
        folder = tmp_path / "images" / ("cats" if index % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"{index:02d}.png")
    (tmp_path / "nouns.txt").write_text("\n".join(NOUNS) + "\n")
    (tmp_path / "captions.txt").write_text("\n".join(CAPTIONS) + "\n")
    return tmp_path


def _encode_args(inputs, model: str, checkpoint, out) -> list[str]:
    return ["encode", "--images", str(inputs / "images"), "--model", model, "--pretrained", str(checkpoint),
            "--nouns", str(inputs / "nouns.txt"), "--captions", str(inputs / "captions.txt"), "--templates", "2",
            "--device", "cpu", "--batch-size", "12", "--chunk-rows", str(CHUNK_ROWS), "--out", str(out)]


def _torchrun(args: list[str], cache) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 -m cae_core ARGS`` (a free port of its own), with its own
    cache folder."""
    env = dict(os.environ, CAE_CACHE_DIR=str(cache))
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "cae_core", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=LIMIT_S)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_torchrun_gives_the_single_process_bundle(inputs, clip_model_name, clip_checkpoint, fresh_cache, capsys):
    single, shared = inputs / "single.npz", inputs / "torchrun.npz"
    assert main(_encode_args(inputs, clip_model_name, clip_checkpoint, single)) == 0
    assert "[rank" not in capsys.readouterr().out  # alone, the command is unchanged

    run = _torchrun(_encode_args(inputs, clip_model_name, clip_checkpoint, shared), inputs / "torchrun-cache")
    assert run.returncode == 0, run.stderr[-3000:]
    # chunks go by index % 2: rank 0 takes 0, 2, 4 of the images, 0, 2 of the nouns, 0, 2 of the captions
    for line in ("[rank 0/2] images: encoded 3 of 6 chunks (12 of 24 images)",
                 "[rank 1/2] images: encoded 3 of 6 chunks (12 of 24 images)",
                 "[rank 0/2] nouns: encoded 2 of 3 chunks (6 of 10 texts)",
                 "[rank 1/2] nouns: encoded 1 of 3 chunks (4 of 10 texts)",
                 "[rank 0/2] captions: encoded 2 of 4 chunks (8 of 14 texts)",
                 "[rank 1/2] captions: encoded 2 of 4 chunks (6 of 14 texts)"):
        assert line in run.stdout, run.stdout
    assert run.stdout.count("encoded 24 images, 10 nouns, 14 captions") == 1  # rank 0 alone writes

    expected, got = load_bundle(single), load_bundle(shared)
    for name in ("image_embeddings", "noun_embeddings", "caption_embeddings"):
        assert np.abs(getattr(got, name) - getattr(expected, name)).max() <= 1e-6, name
    for name in ("image_ids", "labels", "class_names", "nouns", "captions"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
    assert got.metadata == expected.metadata


def test_torchrun_over_a_zip_extracts_it_once_and_gives_the_folders_bundle(inputs, clip_model_name, clip_checkpoint,
                                                                            fresh_cache):
    """Both workers open the same upload: the archive is extracted into the shared cache without the two
    extractions clashing, and the bundle equals the one encoded from the folder itself."""
    archive = inputs / "photos.zip"
    with zipfile.ZipFile(archive, "w") as writer:
        for path in sorted((inputs / "images").rglob("*.png")):
            writer.write(path, Path("photos") / path.relative_to(inputs / "images"))
    folder_bundle = inputs / "folder.npz"
    assert main(_encode_args(inputs, clip_model_name, clip_checkpoint, folder_bundle)) == 0
    args = _encode_args(inputs, clip_model_name, clip_checkpoint, inputs / "zip.npz")
    args[args.index("--images") + 1] = str(archive)
    cache = inputs / "zip-cache"
    run = _torchrun(args, cache)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "[rank 1/2] images: encoded 3 of 6 chunks (12 of 24 images)" in run.stdout, run.stdout
    expected, got = load_bundle(folder_bundle), load_bundle(inputs / "zip.npz")
    np.testing.assert_array_equal(got.image_ids, expected.image_ids)
    np.testing.assert_array_equal(got.labels, expected.labels)
    assert np.abs(got.image_embeddings - expected.image_embeddings).max() <= 1e-6
    extracted = [path for path in (cache / "sources" / "archives").iterdir() if not path.name.startswith(".")]
    assert len(extracted) == 1 and not extracted[0].name.endswith(".partial")  # one extraction, finished


def test_bad_input_under_torchrun_is_one_line_not_a_hang(inputs, clip_model_name, clip_checkpoint):
    args = _encode_args(inputs, clip_model_name, clip_checkpoint, inputs / "b.npz")
    args[args.index("--nouns") + 1] = str(inputs / "missing.txt")
    run = _torchrun(args, inputs / "cache")
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert run.returncode != 0 and errors and all("missing.txt" in line for line in errors), run.stderr[-3000:]
    assert not (inputs / "b.npz").exists()


_WORKER = textwrap.dedent("""
    import os, sys
    from cae_core.errors import CaeError
    from cae_core.inputs.distributed import leave, shard_from_env

    shard = shard_from_env()
    try:
        with shard.stage("images"):
            pass
        with shard.stage("nouns"):
            if shard.rank == 1 and sys.argv[1] == "error":
                raise CaeError("the disk is full")
            if shard.rank == 1 and sys.argv[1] == "crash":
                os._exit(9)  # dies without a word, as when killed
    except CaeError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    finally:
        leave()
""")


@pytest.mark.parametrize("failure", ["error", "crash"])
def test_a_worker_failing_mid_way_stops_the_others(failure):
    """Both workers started by hand (as torchrun does, without its agent that would stop the others)."""
    port = str(_free_port())
    workers = [subprocess.Popen([sys.executable, "-c", _WORKER, failure], cwd=REPO, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=dict(os.environ, WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank),
                                         MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
               for rank in range(2)]
    try:
        (_, err0), (_, err1) = (worker.communicate(timeout=LIMIT_S) for worker in workers)
    finally:  # a hang fails the test, and leaves no process behind
        for worker in workers:
            worker.kill()
    assert workers[0].returncode == 2, err0
    if failure == "error":
        assert workers[1].returncode == 2 and err1.strip().splitlines()[-1] == "error: the disk is full"
        assert err0.strip().splitlines()[-1] == "error: rank 1/2 failed while encoding nouns: the disk is full"
    else:
        assert workers[1].returncode == 9
        assert err0.strip().splitlines()[-1].startswith("error: rank 0/2 lost the other torchrun workers at the "
                                                        "end of nouns")


def test_shard_from_env():
    assert shard_from_env({}) is None and shard_from_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert shard_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == Shard(3, 4, 1)
    for broken in ({"WORLD_SIZE": "2"}, {"WORLD_SIZE": "2", "RANK": "2"}, {"WORLD_SIZE": "two", "RANK": "0"}):
        with pytest.raises(CaeError, match="start the workers with torchrun"):
            shard_from_env(broken)
    assert Shard(1, 3, 1).owned([0, 1, 2, 4, 5, 7]) == [1, 4, 7]


def test_each_worker_gets_the_gpu_of_its_local_rank(monkeypatch):
    """The CUDA mapping, on a pretend node of 2 GPUs (no GPU here)."""
    import torch

    selected = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", selected.append)
    assert Shard(3, 4, 1).select_device("auto") == "cuda:1" and Shard(0, 4, 0).select_device("cuda") == "cuda:0"
    assert Shard(2, 4, 0).select_device("cuda:1") == "cuda:1"  # an explicit GPU is kept
    assert selected == [torch.device("cuda", 1), torch.device("cuda", 0), torch.device("cuda", 1)]
    with pytest.raises(CaeError, match="--nproc_per_node at most that"):
        Shard(2, 3, 2).select_device("cuda")
    assert Shard(1, 2, 1).select_device("cpu") == "cpu" and len(selected) == 3


def test_random_weights_are_refused_under_torchrun(inputs, clip_model_name, fresh_cache, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    args = _encode_args(inputs, clip_model_name, "random", inputs / "b.npz")
    assert main(args) == 2  # before any worker waits for another
    assert "random weights cannot be shared by torchrun workers" in capsys.readouterr().err
