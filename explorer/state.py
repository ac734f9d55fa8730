"""Per-browser-session state of the explorer: the loaded data and the runs made on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import streamlit as st

from cae_core import CaeConfig, ClusteringResult, FeaturesBundle
from cae_core.analysis import true_cluster_count
from cae_core.method.methods import DEFAULT_CLUSTERS

WORKSPACE_KEY = "workspace"
T = TypeVar("T")


@dataclass
class Workspace:
    """What one browser session has loaded and computed.

    ``image_root`` joins with ``bundle.image_ids`` to find each image file (None: no pictures);
    ``random_weights`` is True when the embeddings come from an untrained model, so every page
    must say that the semantics are meaningless; ``results`` maps a method name to its run;
    ``derived`` memoises views computed from the bundle and runs (softmax contrasts, maps,
    alternative semantic spaces) so that switching pages or images never recomputes them;
    ``selection`` holds the images last chosen in a map, which every map highlights, the gallery
    shows and the Correspondences page can browse; ``run_ids`` names each run's record in the run store.
    """

    bundle: FeaturesBundle | None = None
    dataset_name: str = ""
    demo: str | None = None  # the demo's name when the data is one (``find_demos``)
    image_root: Path | None = None
    random_weights: bool = False
    encoded_here: bool = False  # encoded by this server: its CLIP model is loaded and can encode more text
    n_clusters: int = DEFAULT_CLUSTERS
    seed: int = 0
    config: CaeConfig = field(default_factory=CaeConfig)
    results: dict[str, ClusteringResult] = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    derived: dict = field(default_factory=dict)
    selection: np.ndarray | None = None  # images chosen in a map (box or lasso), shared by the pages
    selection_source: str = ""  # where they were chosen, in words
    pictures_note: str = ""  # why the loaded data shows no pictures, when it could have (shown on the Dataset page)
    bundle_path: Path | None = None  # the file the bundle was read from (None: made in this session)
    run_ids: dict[str, str] = field(default_factory=dict)  # method -> its record in the run store
    opened_run: str | None = None  # the stored run opened from the Runs page or a ?run= link

    def load(self, bundle: FeaturesBundle, dataset_name: str, image_root: Path | None, random_weights: bool,
             skipped: list | None = None, pictures_note: str = "", bundle_path: Path | None = None) -> None:
        """Replace the loaded data; runs and views of the previous data are dropped with it."""
        self.bundle, self.dataset_name, self.image_root = bundle, dataset_name, image_root
        self.pictures_note = pictures_note
        self.random_weights, self.demo, self.encoded_here = random_weights, None, False
        self.bundle_path = bundle_path
        self.skipped = list(skipped or [])
        self.n_clusters = int(min(bundle.n_images, true_cluster_count(bundle) or self.n_clusters))
        self.set_results({})

    def set_results(self, results: dict[str, ClusteringResult]) -> None:
        """Store new runs; every view derived from the old ones is dropped."""
        self.results = results
        self.run_ids, self.opened_run = {}, None
        self.derived = {}
        self.select(None)

    def select(self, images: np.ndarray | None, source: str = "") -> None:
        """Make ``images`` (indices) the current selection; None or an empty array clears it."""
        empty = images is None or not len(images)
        self.selection = None if empty else np.unique(np.asarray(images, dtype=np.int64))
        self.selection_source = "" if empty else source

    def memo(self, key: tuple, compute: Callable[[], T]) -> T:
        """``compute()`` once per key for the current data and runs."""
        if key not in self.derived:
            self.derived[key] = compute()
        return self.derived[key]

    def image_path(self, index: int) -> Path | None:
        if self.image_root is None or self.bundle is None:
            return None
        return self.image_root / str(self.bundle.image_ids[index])


def workspace() -> Workspace:
    """This session's workspace (created on first use; each browser session has its own)."""
    if WORKSPACE_KEY not in st.session_state:
        st.session_state[WORKSPACE_KEY] = Workspace()
    return st.session_state[WORKSPACE_KEY]
