#!/usr/bin/env bash
# Installs what is missing and starts inloop. Until the relay exists (issue 3) this builds the
# `inloop` CLI and shows its commands.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p inloop-cli
exec target/release/inloop --help
