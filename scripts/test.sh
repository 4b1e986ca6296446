#!/usr/bin/env bash
# Runs every test of the project, Rust and Python (README: "Test"). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "cargo is required (https://rustup.rs)" >&2
    exit 1
fi
target="${CARGO_TARGET_DIR:-target}"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== schemas up to date"
cargo run --quiet --bin quarry -- schemas --check schemas

echo "== Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi

echo "== Python tests"
cargo build --quiet --bin quarry
venv="${QUARRY_VENV:-$target/py-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ./python pytest
QUARRY_BIN="$target/debug/quarry" "$venv/bin/python" -m pytest python/tests -q
