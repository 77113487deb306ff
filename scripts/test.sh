#!/usr/bin/env bash
# Installs what is missing, then runs every check CI runs: format, lints, Rust tests, the wasm32
# build of the crates that run in the browser, and the Python interop tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace
cargo build -p inloop-doc -p inloop-sync --target wasm32-unknown-unknown
cargo test --workspace
# The stock-Yjs test peer the relay tests drive, checked against the Node y-websocket server.
node tests/node/smoke.mjs
.venv/bin/python -m pytest tests/python -q
