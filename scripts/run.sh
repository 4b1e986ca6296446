#!/usr/bin/env bash
# The main job (README: "Run"): builds the release binary and a virtualenv with the
# Python client, then spawns the supervised sidecar, ingests a real folder and searches.
#   scripts/run.sh [ROOT] [QUERY ...]   (ROOT defaults to Python's standard library)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin quarry
target="${CARGO_TARGET_DIR:-target}"
venv="${QUARRY_VENV:-$target/py-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ./python
QUARRY_BIN="$target/release/quarry" exec "$venv/bin/python" examples/python_host.py "$@"
