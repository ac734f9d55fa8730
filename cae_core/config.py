"""Where the project's shared data lives (read by path, never copied into the repository)."""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """``$CAE_DATA_DIR``, else ``<repo>/../shared/data`` (the folder may not exist)."""
    if os.environ.get("CAE_DATA_DIR"):
        return Path(os.environ["CAE_DATA_DIR"]).expanduser()
    return _REPO_ROOT.parent / "shared" / "data"
