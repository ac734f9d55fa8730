"""The app's pages, listed once: the sidebar, Home's list of steps and the links between pages read ``PAGES``.

The navigation is drawn by ``app.py`` (``st.navigation``), not by Streamlit's folder convention for
``pages/``. Streamlit still applies that convention to a server's first script runs: until a run calls
``st.navigation``, a session opened straight on a page (a shared link such as ``/Polysemy?word=crane``)
runs that page alone, under a sidebar whose first entry is the main script's file name, "app". Such a
run is caught on the page (``take_over``) and started again under this navigation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import streamlit as st
from streamlit.navigation.page import StreamlitPage
from streamlit.runtime.scriptrunner import get_script_run_ctx


@dataclass(frozen=True)
class PageEntry:
    """One page: its script (from the repository root), sidebar title and Home's line about it."""

    path: str
    title: str
    what: str


DATASET_PAGE = "pages/1_Dataset.py"
SEMANTIC_SPACE_PAGE = "pages/2_Semantic_space.py"
CORRESPONDENCES_PAGE = "pages/3_Correspondences.py"

# To add a page: its script in pages/ and one line here (the URL path is the file name without its number)
PAGES = (
    PageEntry(DATASET_PAGE, "Dataset",
              "choose images, a CLIP model and text banks; encode, or load a features bundle"),
    PageEntry(SEMANTIC_SPACE_PAGE, "Semantic space", "the k-means centres and the nouns and captions each selects"),
    PageEntry(CORRESPONDENCES_PAGE, "Correspondences",
              "per image: OT-matched texts against softmax retrieval, and its fusion weights"),
    PageEntry("pages/4_Embedding_map.py", "Embedding map",
              "linked UMAPs of image, noun, caption and fused embeddings, a cross-modal map with the plan's links"),
    PageEntry("pages/5_Clusters.py", "Clusters", "scores, clusters named by their texts, method comparison, downloads"),
    PageEntry("pages/6_Polysemy.py", "Polysemy", "one word, several senses: how captions tell them apart"),
    PageEntry("pages/7_Search.py", "Search",
              "a phrase: images by cosine beside the images the transport plan links to it"),
    PageEntry("pages/8_Runs.py", "Runs",
              "every recorded run (this app's and the command line's): filter, open, compare, delete"),
)

APP = Path(__file__).resolve().parents[1] / "app.py"
_drawn = False  # whether app.py has drawn the navigation in this process


def navigation(home: Callable[[], None]) -> StreamlitPage:
    """The app's navigation: ``home`` (titled Home, the default page) then every page of ``PAGES``."""
    global _drawn
    _drawn = True
    return st.navigation(_pages(home))


def _pages(home: Callable[[], None]) -> list[StreamlitPage]:
    # the default page's URL is the root: a page of PAGES as the default would lose its own URL path
    return ([st.Page(home, title="Home", icon=":material/home:", default=True)]
            + [st.Page(page.path, title=page.title) for page in PAGES])


def take_over() -> None:
    """On a page that the folder convention runs for app.py (app.py's navigation not drawn yet in this
    process), start the run again under app.py's navigation; elsewhere (a page run alone, as tests do), nothing.

    ``st.navigation`` turns the folder convention off for the whole process, and the rerun keeps the page and
    its query parameters, so the link shows what it names.
    """
    ctx = get_script_run_ctx()
    if not _drawn and ctx is not None and Path(ctx.main_script_path).resolve() == APP:
        st.navigation(_pages(_rerun_first), position="hidden")
        st.rerun()


def _rerun_first() -> None:
    """Home in the navigation ``take_over`` draws for one moment: never run, the run starts again first."""
