#!/usr/bin/env bash
# Set up a fresh machine (Python 3.11) and start the explorer.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements.txt
export CAE_DATA_DIR="${CAE_DATA_DIR:-$(cd .. && pwd)/shared/data}"
exec python3 -m streamlit run app.py "$@"
