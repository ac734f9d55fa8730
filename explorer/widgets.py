"""Widgets every page shares: page header, guidance when nothing is loaded, the random-weights banner,
errors as messages, cached thumbnails and image grids, and the one clustering run per data load."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import re
import time
from pathlib import Path
from typing import Iterator, Sequence

import streamlit as st
from PIL import Image, ImageOps

from cae_core import CaeError, ClusteringResult, FeaturesBundle, run_methods
from cae_core.method import DEFAULT_METHOD, FUSION_CHOICES, available_methods
from cae_core.inputs import default_demo, fetch_demo, load_demo, load_image

from .navigation import DATASET_PAGE, take_over
from .runs import open_run, record_runs
from .state import Workspace, workspace

logger = logging.getLogger(__name__)

BROWSE_KEY, MAP_SELECTION = "correspondences-mode", "map selection"  # the Correspondences page's image filter
SELECTION_MODE = ("box", "lasso")  # what a map's drag selects (a click on one point would select it alone)
MAIN_METHOD = DEFAULT_METHOD
THUMBNAIL_SIZE = 128
DEMO_LINK_KEY = "demo-link"
RUN_LINK_KEY = "run-link"
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=])")


def escape_markdown(text: object) -> str:
    """``text`` shown literally where Streamlit renders markdown (captions, labels, st.markdown).

    Dataset and corpus texts are data: a caption such as ``![x](http://…)`` must not load anything.
    """
    return _MARKDOWN_SPECIALS.sub(r"\\\1", str(text))


def page_header(title: str, intro: str, deep_link: bool = False) -> Workspace:
    """Title, one-line intro and, when the embeddings are untrained, the banner; returns the workspace.

    ``?demo=NAME`` in the URL opens that demo (loaded and clustered) on any page, ``?run=ID`` a stored
    run (its bundle and the runs made with it); ``deep_link`` (a page opened from a link that names what
    to show, e.g. ``?word=crane``) opens the default demo when nothing is loaded, so a shared link never
    lands on an empty page.
    """
    take_over()
    st.set_page_config(page_title=f"{title} · CAE Explorer", page_icon=":material/explore:", layout="wide")
    st.title(title)
    st.caption(intro)
    ws = workspace()
    requested = st.query_params.get("demo")
    requested_run = st.query_params.get("run")
    # a link is honoured once per session: data loaded later must not be replaced while the URL keeps it
    if requested_run and st.session_state.get(RUN_LINK_KEY) != requested_run:
        st.session_state[RUN_LINK_KEY] = requested_run
        with user_errors():
            open_run(ws, requested_run)
            st.info(f"Opened run **{escape_markdown(ws.opened_run)}**: {escape_markdown(ws.dataset_name)}, "
                    f"K = {ws.n_clusters}, seed {ws.seed}, as it was made.", icon=":material/history:")
    elif requested and st.session_state.get(DEMO_LINK_KEY) != requested:
        st.session_state[DEMO_LINK_KEY] = requested
        open_demo(ws, requested)
    elif deep_link and ws.bundle is None:
        open_demo(ws, default_demo())
    semantics_banner(ws)
    if ws.opened_run:
        st.caption(f"Showing stored run `{ws.opened_run}` (link: `?run={ws.opened_run}`); the Runs page lists "
                   "every recorded run.")
    return ws


def open_demo(ws: Workspace, name: str) -> bool:
    """Load the demo called ``name`` into the workspace and run every method on it. False, with the reason
    shown, if that failed (an unknown name, a bundle that fails validation); what was loaded stays loaded."""
    with user_errors():
        bundle, image_root, demo = load_demo(name)
        ws.load(bundle, demo.name, image_root, random_weights=False, bundle_path=demo.path)
        ws.demo = demo.name
        if demo.synthetic:
            st.info(f"Opened the **{demo.name}** demo: planted embeddings, synthetic words.",
                    icon=":material/science:")
        else:
            st.info(f"Opened the **{escape_markdown(demo.name)}** demo ({escape_markdown(demo.model)}, real CLIP "
                    "features). Load your own data on the Dataset page.", icon=":material/play_circle:")
        return run_all(ws)
    return False


def semantics_banner(ws: Workspace) -> None:
    if ws.random_weights:
        st.warning("**Random weights: the semantics are meaningless.** These embeddings come from an untrained "
                   "model, so the nouns and captions matched to images say nothing about what the images show. "
                   "The mechanics (centres, transport, fusion weights, maps) are real; load a pretrained "
                   "checkpoint or a features bundle to read meaning into them.", icon=":material/warning:")


def show_error(error: Exception) -> None:
    """A one-line message for the user; unexpected errors are logged in full for the operator."""
    # escaped: a message may quote what a link or a file said (a demo's name, a path), which is data
    if isinstance(error, CaeError):
        st.error(escape_markdown(error), icon=":material/block:")
    else:
        logger.exception("unexpected error in the explorer", exc_info=error)
        st.error(escape_markdown(f"Unexpected error ({error.__class__.__name__}: {error}).")
                 + " The details are in the server log.", icon=":material/block:")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Around an engine call: errors become messages, never tracebacks (Streamlit's own control flow,
    st.stop and st.rerun, derives from BaseException and passes through)."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - every failure must reach the user as a message
        show_error(error)


def require_bundle(ws: Workspace) -> FeaturesBundle:
    """The loaded bundle, or guidance on how to get one and the end of the page."""
    if ws.bundle is None:
        st.info("Nothing is loaded yet. On the **Dataset** page, either encode your images with a CLIP model "
                "(a pretrained tag or a local checkpoint file), or load a features bundle (`.npz`). Without "
                "pretrained weights you can still tick **random weights** there to explore the mechanics of "
                "CAE; the semantics are then meaningless.", icon=":material/arrow_forward:")
        st.page_link(DATASET_PAGE, label="Go to the Dataset page", icon=":material/folder_open:")
        st.stop()
    return ws.bundle


def run_controls(ws: Workspace, key: str) -> None:
    """Number of clusters, seed and the button that runs CAE and its baselines (``key`` makes widgets unique)."""
    bundle = require_bundle(ws)
    left, middle, fusion_column, right = st.columns([1, 1, 1, 2], vertical_alignment="bottom")
    n_clusters = left.number_input("Clusters K", 1, bundle.n_images, int(ws.n_clusters), key=f"{key}-k",
                                   help="Defaults to the number of ground-truth classes when they are known.")
    seed = middle.number_input("Seed", 0, 2**31 - 1, int(ws.seed), key=f"{key}-seed")
    fusion = fusion_column.selectbox("Fusion", FUSION_CHOICES, index=FUSION_CHOICES.index(ws.config.fusion),
                                     key=f"{key}-fusion",
                                     help="agreement: each text view weighed by how far its neighbourhoods agree "
                                          "with the image's (the default); paper: the formula as written; "
                                          "equal: 1/3 each.")
    if right.button(f"Run CAE and {len(available_methods(bundle)) - 1} baselines", type="primary",
                    key=f"{key}-run"):
        ws.n_clusters, ws.seed = int(n_clusters), int(seed)
        ws.config = dataclasses.replace(ws.config, fusion=fusion)  # a new object: old results keep theirs
        run_all(ws)


def require_run(ws: Workspace) -> ClusteringResult:
    """CAE's run on the loaded bundle; without one, the controls to make it and the end of the page."""
    require_bundle(ws)
    if MAIN_METHOD not in ws.results:
        st.info("The data is loaded but not clustered yet: run CAE (the baselines run with it, sharing its "
                "semantic space and alignments).", icon=":material/arrow_forward:")
        run_controls(ws, "require-run")
        if MAIN_METHOD not in ws.results:
            st.stop()
    return ws.results[MAIN_METHOD]


def run_all(ws: Workspace, methods: Sequence[str] | None = None) -> bool:
    """Run ``methods`` once on the loaded bundle with a progress bar and keep the results in the workspace.

    Pages read ``ws.results`` afterwards, so switching pages never recomputes. False when it failed.
    """
    bundle = require_bundle(ws)
    methods = available_methods(bundle) if methods is None else methods
    label = f"Clustering {bundle.n_images:,} images into {ws.n_clusters} clusters ({len(methods)} methods)"
    with st.status(label, expanded=True) as status:
        bar = st.progress(0.0, text="starting")
        finished = 0

        def progress(stage: str, fraction: float, message: str) -> None:
            nonlocal finished
            # each method ends with its k-means: count those for the bar, show the stage as its text
            if stage == "clustering" and fraction >= 1.0:
                finished += 1
            bar.progress(min(1.0, finished / len(methods)),
                         text=f"{stage}: {message} · {finished}/{len(methods)} methods done")

        start = time.perf_counter()
        try:
            results = run_methods(bundle, list(methods), ws.n_clusters, config=ws.config, seed=ws.seed,
                                  progress=progress)
        except Exception as error:  # noqa: BLE001 - shown to the user, the page stays usable
            status.update(label="Clustering failed", state="error", expanded=True)
            show_error(error)
            return False
        ws.set_results(results)
        record_runs(ws)
        status.update(label=f"{label}: done in {time.perf_counter() - start:.1f} s", state="complete",
                      expanded=False)
    return True


def fetch_with_progress(name: str) -> bool:
    """Build the demo ``name`` from its public sources (``fetch_demo``) under a progress bar; False when it
    failed (the reason is shown)."""
    with st.status(f"Fetching {name}", expanded=True) as status:
        bar = st.progress(0.0, text="starting")

        def progress(stage: str, fraction: float, message: str) -> None:
            bar.progress(min(max(fraction, 0.0), 1.0), text=f"{stage}: {message}")

        try:
            path = fetch_demo(name, progress=progress)
        except Exception as error:  # noqa: BLE001 - shown to the user, the page stays usable
            status.update(label=f"Fetching {name} failed", state="error", expanded=True)
            show_error(error)
            return False
        status.update(label=f"Fetched {name} into {path}", state="complete", expanded=False)
    return True


@st.cache_data(max_entries=20_000, show_spinner=False)
def _thumbnail_bytes(path: str, size: int, modified_ns: int) -> bytes | None:
    """JPEG bytes of the image fitted into ``size``² (``modified_ns`` keys the cache on the file's version).

    Cached across reruns and sessions: a grid is decoded once, then served from memory.
    """
    try:
        image = load_image(Path(path))
    except CaeError:
        return None
    # small images (CIFAR's 32 px) are enlarged too, so every grid cell has the same size
    image = ImageOps.contain(image, (size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def thumbnail(path: Path | None, size: int = THUMBNAIL_SIZE) -> bytes | None:
    """Cached thumbnail of the image file at ``path``; None when there is no readable file."""
    if path is None:
        return None
    try:
        modified = path.stat().st_mtime_ns
    except OSError:
        return None
    return _thumbnail_bytes(str(path), size, modified)


def image_grid(paths: Sequence[Path | None], captions: Sequence[str], columns: int = 8,
               size: int = THUMBNAIL_SIZE) -> None:
    """Thumbnails in rows of ``columns``, each with its caption (shown as text, not markdown)."""
    for start in range(0, len(paths), columns):
        cells = st.columns(columns)
        for cell, path, caption in zip(cells, paths[start:start + columns], captions[start:start + columns]):
            data = thumbnail(path, size)
            if data is None:
                cell.caption(f"no picture · {escape_markdown(caption)}")
            else:
                cell.image(data, caption=escape_markdown(caption), width="stretch")


def image_caption(ws: Workspace, index: int) -> str:
    """``#index · class`` for an image (the class when ground truth is known)."""
    bundle = ws.bundle
    label = bundle.label_name(int(bundle.labels[index])) if bundle.labels is not None else ""
    return f"#{index} · {label}" if label else f"#{index}"


def image_grid_for(ws: Workspace, indices: Sequence[int], columns: int = 8) -> None:
    """Grid of the workspace's images at ``indices``."""
    image_grid([ws.image_path(int(i)) for i in indices], [image_caption(ws, int(i)) for i in indices], columns)
