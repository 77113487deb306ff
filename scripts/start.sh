#!/usr/bin/env bash
# Installs what is missing, builds inloop and starts the relay on the embedded default: SQLite in
# ./inloop-data, http://127.0.0.1:8787. It prints a URL with an admin token to open.
#
#   scripts/start.sh [inloop serve options]      e.g. --addr 0.0.0.0:8787 --data /srv/inloop
#
# It serves web/dist (Pyodide, the kernel worker, the engine; the notebook page itself comes with
# issue 6) and starts a local server runtime when a cell is run on the server. Stop it with
# Ctrl+C; every change is already on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p inloop-cli
scripts/build-web.sh
exec target/release/inloop serve --web web/dist "$@"
