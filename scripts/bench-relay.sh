#!/usr/bin/env bash
# The relay fan-out bench (relay/benches/fanout/): inloop's relay beside the Node
# @y/websocket-server and y-sweet. Installs the other two servers if they are missing, then runs
# the bench with this script's arguments passed through:
#
#   scripts/bench-relay.sh                     every scenario, every server (about 5 minutes)
#   scripts/bench-relay.sh --only inloop --scenario idle
#   scripts/bench-relay.sh --help              what the bench measures and its options
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1;34mbench-relay:\033[0m %s\n' "$*" >&2; }

if [ ! -x "$HOME/.cargo/bin/y-sweet" ]; then
  log "installing y-sweet (a few minutes, once)"
  # Without --locked its dependencies resolve to versions it does not build with.
  cargo install y-sweet --locked
fi

if [ ! -d node_modules/@y/websocket-server ]; then
  log "installing npm packages"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
fi

# Each client is a socket in the bench and one in the server under test.
ulimit -n 65536 2>/dev/null || true

exec cargo bench -p inloop-relay --bench fanout -- "$@"
