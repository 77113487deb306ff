#!/usr/bin/env bash
# Installs what is missing, then runs every check CI runs: format, lints, Rust tests, the wasm32
# builds and the engine's tests in headless Chromium, the browser tests against a real relay, and
# the Python interop tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace
# The browser side: the crates that run in wasm32, the kernel model without its Jupyter part,
# and the engine's own tests in headless Chromium (wasm-bindgen-test-runner, see .cargo/config.toml).
cargo clippy -p inloop-wasm --all-targets --target wasm32-unknown-unknown -- -D warnings
cargo build -p inloop-doc -p inloop-sync -p inloop-wasm --target wasm32-unknown-unknown
cargo build -p inloop-kernel --no-default-features --target wasm32-unknown-unknown
CHROMEDRIVER=/usr/bin/chromedriver cargo test -p inloop-wasm --target wasm32-unknown-unknown
cargo test --workspace
# The page's files (Pyodide, wheels, kernel worker, engine) and the browser tests against a real
# relay: the Pyodide kernel, and engines in pages syncing, merging offline edits and running cells.
scripts/build-web.sh
npx --no-install tsc -p tsconfig.json
node --test tests/browser/*.test.mjs
# The page end to end, against a real relay and its local server runtime (ipykernel from .venv):
# live typing and cursors, browser vs server runs, a server run outliving every tab, offline
# through the service worker, share-link limits, .ipynb round trip; screenshots in tests/out.
node --test tests/e2e/*.test.mjs
# The stock-Yjs test peer the relay tests drive, checked against the Node y-websocket server.
node tests/node/smoke.mjs
.venv/bin/python -m pytest tests/python -q
