"""Things fetched once per server: CLIP models, open_clip's model and tag lists, uploads written to disk."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from cae_core import CaeError, FeaturesBundle
from cae_core.files import atomic_write_bytes
from cae_core.inputs import ClipModel, cache_dir, checkpoint_changed, load_clip, text_model_of

UPLOADS_KEY = "saved-uploads"
LOAD_RETRY_S = 600  # a model that failed to load (offline, say) is tried again after this long


@st.cache_resource(show_spinner="Loading the CLIP model…", max_entries=2)
def clip_model(model: str, pretrained: str | None, device: str = "auto") -> ClipModel:
    """A CLIP model loaded once per server and shared by the pages (seconds, and hundreds of MB).

    Random weights (``pretrained=None``) are one initialisation for the server's life, so texts
    encoded later (the Polysemy page's glosses) share the space of the bundle encoded here.
    """
    return load_clip(model, pretrained, device)


@st.cache_data(show_spinner=False, ttl=LOAD_RETRY_S)
def clip_problem(model: str, pretrained: str | None, device: str = "auto") -> str:
    """Why ``clip_model`` cannot load this model ("" when it can). Failures are remembered for every session
    for a while: a download that cannot happen offline takes about a minute of retries to fail."""
    try:
        clip_model(model, pretrained, device)
    except CaeError as error:
        return str(error).rstrip(".")
    return ""


@st.cache_resource(show_spinner=False)
def open_clip_models() -> list[str]:
    """Every open_clip architecture name (importing open_clip takes seconds: done once per server)."""
    import open_clip

    return list(open_clip.list_models())


@st.cache_resource(show_spinner=False)
def pretrained_tags(model: str) -> list[str]:
    import open_clip

    return list(open_clip.list_pretrained_tags_by_model(model))


def saved_upload(upload: UploadedFile) -> Path:
    """The uploaded file written under ``<cache>/uploads``, named by its content, so the engine can read it
    by path and a second upload of the same bytes reuses the file (and any archive extracted from it)."""
    saved = st.session_state.setdefault(UPLOADS_KEY, {})
    if upload.file_id not in saved:
        data = upload.getvalue()
        safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(upload.name).name)[-80:] or "upload"
        path = cache_dir() / "uploads" / f"{hashlib.sha256(data).hexdigest()[:16]}-{safe_name}"
        if not path.exists():
            atomic_write_bytes(path, data)  # a reader never sees half an upload
        saved[upload.file_id] = path
    return saved[upload.file_id]


def text_tower(bundle: FeaturesBundle) -> tuple[ClipModel | None, str]:
    """The model that made ``bundle`` and a note on its weights, or None and why it cannot be loaded."""
    try:
        model, pretrained = text_model_of(bundle.metadata)
    except CaeError as error:
        return None, str(error).rstrip(".")
    problem = clip_problem(model, pretrained)
    if problem:
        return None, problem
    clip = clip_model(model, pretrained)
    if pretrained is None:
        return clip, (f"{model} with random weights: the initialisation that encoded the captions only if this "
                      "server encoded the bundle; otherwise the two sides do not even share a space")
    if checkpoint_changed(bundle.metadata, clip.checkpoint_fingerprint):
        return clip, (f"{model}, {pretrained}; this checkpoint file changed since the bundle was encoded: if its "
                      "weights did, these cosines are meaningless")
    return clip, f"{model}, {pretrained}"
