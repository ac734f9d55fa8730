"""What CI needs before it runs the tests: the shared data (real CLIP feature bundles, images, captions)
and Debian's Chromium with its driver. Prints each missing thing on its own line and exits 1, so that CI
stops at once instead of passing with ~50 tests skipped.

    python3 scripts/check_prerequisites.py [--data] [--browser]     (neither flag: both)

Standard library only: it runs before the requirements are installed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# what the tests read from the shared data folder (tests/test_real_features.py, test_browser.py, cifar_data.py,
# test_corpora.py)
DATA_FILES = ("embeddings/stl10-vitb16/stl10-vitb16.npz", "embeddings/food101-vitb32/food101-vitb32.npz")
DATA_FOLDERS = ("embeddings/stl10-vitb16/images", "images/cifar10-test", "captions/flickr8k", "captions/flickr30k")
BROWSER = (Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver"))


def data_dir() -> Path:
    """``$CAE_DATA_DIR``, else ``../shared/data`` beside the checkout (as ``cae_core.config.data_dir``)."""
    return Path(os.environ.get("CAE_DATA_DIR") or REPO.parent / "shared" / "data").expanduser()


def missing_data(folder: Path) -> list[str]:
    if not folder.is_dir():
        return [f"the shared data folder {folder} (the embeddings bundles, images and captions the tests read): "
                "put it beside the checkout as ../shared/data or set CAE_DATA_DIR"]
    missing = [f"{folder / name} (a real CLIP features bundle)" for name in DATA_FILES
               if not (folder / name).is_file()]
    missing += [f"{folder / name}/ (a folder)" for name in DATA_FOLDERS if not (folder / name).is_dir()]
    return missing


def missing_browser() -> list[str]:
    return [f"{path} (the browser tests drive it: apt-get install chromium chromium-driver)" for path in BROWSER
            if not (path.is_file() and os.access(path, os.X_OK))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="store_true", help="check the shared data folder")
    parser.add_argument("--browser", action="store_true", help="check Chromium and chromedriver")
    args = parser.parse_args(argv)
    both = not (args.data or args.browser)
    missing = (missing_data(data_dir()) if args.data or both else []) + \
        (missing_browser() if args.browser or both else [])
    if missing:
        print(f"CI prerequisites missing ({len(missing)}); the tests would skip instead of testing them:",
              file=sys.stderr)
        for item in missing:
            print(f"  missing: {item}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
