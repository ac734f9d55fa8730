"""Things the Dataset page fetches once: open_clip's model and tag lists, and uploads written to disk."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from cae_core.cache import cache_dir

UPLOADS_KEY = "saved-uploads"


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
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.partial")
            partial.write_bytes(data)
            partial.replace(path)  # atomic: a reader never sees half an upload
        saved[upload.file_id] = path
    return saved[upload.file_id]
