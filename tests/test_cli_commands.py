"""The CLI's small commands as a user runs them (a fresh process each): ``cache`` and ``cache --clear``,
``demo --list`` and ``encode --estimate``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from cae_core.inputs import DEMO_SOURCES
from cae_core import planted_bundle, save_bundle
from cae_core.inputs.cache import cached_array
from cae_core.inputs.presets import PRESETS, preset_banks

REPO = Path(__file__).resolve().parents[1]


def cae(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cae_core", *args], capture_output=True, text=True, timeout=600,
                          cwd=REPO, env={**os.environ, **env})


def test_cache_lists_then_clear_empties_it(fresh_cache):
    cached_array({"t": "listed"}, lambda: np.ones((256, 256)), description="a quarter MiB")
    cached_array({"t": "other"}, lambda: np.zeros((4, 4)), description="a small one")
    listed = cae("cache", CAE_CACHE_DIR=str(fresh_cache))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith(f"{fresh_cache}: 2 entries, 0.5 MiB")
    assert "a quarter MiB" in listed.stdout and "a small one" in listed.stdout and "complete" in listed.stdout

    cleared = cae("cache", "--clear", CAE_CACHE_DIR=str(fresh_cache))
    assert cleared.returncode == 0 and cleared.stdout.strip() == f"freed 0.5 MiB in {fresh_cache}"
    assert not [path for path in fresh_cache.rglob("*") if path.is_file()]
    assert cae("cache", CAE_CACHE_DIR=str(fresh_cache)).stdout.startswith(f"{fresh_cache}: 0 entries, 0.0 MiB")


def test_demo_list_names_every_bundle_found_and_the_planted_demo(tmp_path):
    demo = tmp_path / "embeddings" / "tiny"
    (demo / "images").mkdir(parents=True)
    bundle = planted_bundle(n_images=40, n_classes=4, dim=16, n_nouns=20, n_captions=30)
    bundle.metadata.update(image_root="images", model="ViT-X", pretrained="somewhere", synthetic=False)
    save_bundle(bundle, demo / "tiny.npz")
    save_bundle(bundle, tmp_path / "embeddings" / "elsewhere.npz")  # image_root "images" is not beside it
    (tmp_path / "embeddings" / "broken.npz").write_bytes(b"not a bundle")
    listed = cae("demo", "--list", CAE_DATA_DIR=str(tmp_path))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[:3] == [
        "elsewhere: 40 images, ViT-X (somewhere), 20 nouns, 30 captions, no pictures",
        "tiny: 40 images, ViT-X (somewhere), 20 nouns, 30 captions",
        "planted: 600 images, planted (synthetic, CLIP-like geometry), 240 nouns, 360 captions, no pictures "
        "(synthetic)"]
    # then each real demo that is not here, with the command that fetches it
    assert sorted(line.split(":")[0] for line in lines[3:]) == sorted(DEMO_SOURCES)
    assert all(f"--fetch {line.split(':')[0]} builds it" in line for line in lines[3:])


def test_encode_estimate_prints_each_presets_work_and_writes_nothing(tmp_path, clip_model_name, fresh_cache):
    for name in ("cat", "dog"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for index in range(3):
            Image.new("RGB", (16, 16), (index * 80, 0, 0)).save(tmp_path / "images" / name / f"{index}.png")
    done = cae("encode", "--images", str(tmp_path / "images"), "--model", clip_model_name, "--device", "cpu",
               "--estimate", CAE_CACHE_DIR=str(fresh_cache))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == list(PRESETS)
    for line, (name, preset) in zip(lines, PRESETS.items()):
        nouns, captions = preset_banks(preset)
        work = (f"{name}: 6 images, {len(nouns) * preset.templates:,} noun prompts, {len(captions):,} captions: "
                f"about ")
        assert line.startswith(work), (line, work)
        minutes = float(re.search(r"about ([0-9,.]+) min on cpu", line).group(1).replace(",", ""))
        assert minutes > 0 and f"({clip_model_name}, measured here" in line
    assert not list(tmp_path.glob("*.npz"))
