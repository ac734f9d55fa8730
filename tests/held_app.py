"""``streamlit run app.py`` with every clustering run held at its fusion stage until a file appears.

A test uses it to make one session's run last exactly as long as it needs (the file is its event),
instead of guessing how long some amount of work takes on this machine. Usage:
``CAE_TEST_RELEASE=/path/to/file python tests/held_app.py [streamlit options]``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from tests/: the project is not on the path otherwise

import cae_core.method.run as run  # noqa: E402

RELEASE = Path(os.environ["CAE_TEST_RELEASE"])
GIVE_UP_S = 600  # a forgotten release must not hang a CI run forever
_fuse_for = run.fuse_for


def held_fuse_for(*args, **kwargs):
    deadline = time.monotonic() + GIVE_UP_S
    while not RELEASE.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return _fuse_for(*args, **kwargs)


run.fuse_for = held_fuse_for  # _run looks fuse_for up in its module at call time

if __name__ == "__main__":
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(REPO / "app.py"), *sys.argv[1:]]
    sys.exit(cli.main())
