#!/usr/bin/env bash
# Set up a fresh machine (Python 3.11, Debian) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements-test.txt
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    # the browser test drives Debian's Chromium; Selenium's own browser download cannot work offline
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver
fi
if [ "${CI:-}" = true ]; then
    # CI must test the browser, not skip it: stop here, naming what the install step left missing
    python3 scripts/check_prerequisites.py --browser
fi
export CAE_DATA_DIR="${CAE_DATA_DIR:-$(cd .. && pwd)/shared/data}"
exec python3 -m pytest "$@"
