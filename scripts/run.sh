#!/usr/bin/env bash
# The main job (README: "Run"): builds the release binary and drives a sample session
# of `quarry serve` over its stdin/stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/quarry"
{
    echo '{"jsonrpc":"2.0","id":1,"method":"ping"}'
    echo '{"jsonrpc":"2.0","id":2,"method":"debug/sleep","params":{"ms":35,"_meta":{"progressToken":"t","priority":"high"}}}'
    echo '{"jsonrpc":"2.0","id":3,"method":"debug/echo","params":{"hello":"world"}}'
    echo '{"jsonrpc":"2.0","id":4,"method":"debug/sleep","params":{"ms":5000,"_meta":{"timeoutMs":50}}}'
    echo 'not json'
    echo '{"jsonrpc":"2.0","id":5,"method":"health"}'
    sleep 0.2
    echo '{"jsonrpc":"2.0","id":6,"method":"shutdown"}'
} | "$bin" serve --debug-methods
