#!/usr/bin/env bash
# The main job (README: "Run"): builds and installs the wheel — the release `quarry`
# binary packed with the Python client (maturin, pyproject.toml at the root) — into a
# virtualenv, then spawns the supervised sidecar from it (no QUARRY_BIN, nothing on
# PATH), ingests a real folder and searches.
#   scripts/run.sh [ROOT] [QUERY ...]   (ROOT defaults to Python's standard library)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
export CARGO_TARGET_DIR="$target"
venv="${QUARRY_VENV:-$target/run-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps .
exec env -u QUARRY_BIN "$venv/bin/python" examples/python_host.py "$@"
