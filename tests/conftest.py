"""Shared fixtures. Nothing waits on the network; caches go to a throw-away or repo-local folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ci_prerequisites import (pytest_collectreport, pytest_runtest_logreport, pytest_sessionfinish,  # noqa: F401
                              pytest_terminal_summary)

REPO = Path(__file__).resolve().parents[1]
os.environ["HF_HUB_OFFLINE"] = "1"
# a repo-local (git-ignored) cache survives between runs: the WordNet bank is built once (~30 s)
os.environ.setdefault("CAE_CACHE_DIR", str(REPO / ".cache" / "pytest"))

# a real open_clip architecture, the smallest text tower among the plain CLIP configs
TEST_MODEL = "ViT-S-32-alt"


@pytest.fixture(scope="session")
def clip_model_name() -> str:
    return TEST_MODEL


@pytest.fixture(scope="session")
def clip_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised ``TEST_MODEL`` checkpoint (state dict) in a temporary file."""
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model(TEST_MODEL)
    path = tmp_path_factory.mktemp("checkpoint") / f"{TEST_MODEL}-random.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def clip_model(clip_checkpoint):
    """``TEST_MODEL`` loaded from ``clip_checkpoint`` on the CPU (shared: do not modify)."""
    from cae_core.inputs.encoders import load_clip

    return load_clip(TEST_MODEL, str(clip_checkpoint), "cpu")


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache folder for this test only."""
    path = tmp_path / "cache"
    monkeypatch.setenv("CAE_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real data folder; tests needing it are skipped where it is absent."""
    from cae_core.config import data_dir

    if not (data_dir() / "images").is_dir():
        pytest.skip(f"shared data not found at {data_dir()} (set CAE_DATA_DIR)")
    return data_dir()
