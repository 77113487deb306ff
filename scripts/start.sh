#!/usr/bin/env bash
# Installs what is missing, builds inloop and starts the relay on the embedded default: SQLite in
# ./inloop-data, http://127.0.0.1:8787. It prints a URL with an admin token to open.
#
#   scripts/start.sh [inloop serve options]      e.g. --addr 0.0.0.0:8787 --data /srv/inloop
#
# Today the relay serves the sync API (the page and the local server runtime come with issues 4
# to 6). Stop it with Ctrl+C; every change is already on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p inloop-cli
exec target/release/inloop serve "$@"
