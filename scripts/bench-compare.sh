#!/usr/bin/env bash
# A change's cost, in one run: builds the benches as they were at REV (in a git worktree under
# target/bench-compare/, its own target folder, the repository's .venv and node_modules shared)
# and as they are now, then runs each before/now/before/now on the same machine, so that noise
# hits both alike, and prints the outputs labelled. The relay's fanout bench does the pairing
# itself (`--baseline`: both relays in every scenario of one run).
#
#   scripts/bench-compare.sh REV                     handoff, papermill and fanout
#   scripts/bench-compare.sh REV handoff papermill   some of them
#
# Environment: BENCH_ROUNDS (2: before/now pairs per bench), HANDOFF_RUNS (200),
# BENCH_RUNS (papermill's, 32), FANOUT_ARGS (extra fanout options, e.g. "--scenario idle").
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
if [ $# -lt 1 ] || [ "$1" = "--help" ] || [ "$1" = "-h" ]; then
  usage
  exit 0
fi
rev=$(git rev-parse --short "$1") || { echo "bench-compare: $1 is not a revision" >&2; exit 2; }
shift
benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(handoff papermill fanout)
rounds=${BENCH_ROUNDS:-2}

log() { printf '\033[1;34mbench-compare:\033[0m %s\n' "$*" >&2; }

package_of() {
  case "$1" in
    handoff) echo inloop-runtime ;;
    papermill) echo inloop-batch ;;
    fanout) echo inloop-relay ;;
    *) echo "bench-compare: unknown bench $1 (handoff, papermill, fanout)" >&2; exit 2 ;;
  esac
}

# Builds bench $1 in the checkout $2 with target folder $3; prints the binary's path.
build() {
  local bench=$1 dir=$2 target=$3
  (cd "$dir" && CARGO_TARGET_DIR=$target cargo bench -p "$(package_of "$bench")" --bench "$bench" \
    --no-run --message-format=json 2>/dev/null) |
    python3 -c 'import json,sys
name=sys.argv[1]
for line in sys.stdin:
    m=json.loads(line)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]==name:
        print(m["executable"])' "$bench" | tail -1
}

work=target/bench-compare
before_dir=$work/$rev-src
if [ ! -d "$before_dir" ]; then
  log "checking out $rev in $before_dir"
  mkdir -p "$work"
  git worktree add --detach "$before_dir" "$rev" >/dev/null
fi
# The benches find the venv and the Node packages beside their sources.
for shared in .venv node_modules; do
  [ -e "$shared" ] && [ ! -e "$before_dir/$shared" ] && ln -s "$PWD/$shared" "$before_dir/$shared"
done

for bench in "${benches[@]}"; do
  log "building $bench as of $rev (release; the first time takes minutes)"
  old=$(build "$bench" "$before_dir" "$PWD/$work/target")
  log "building $bench as it is now"
  new=$(build "$bench" . "${CARGO_TARGET_DIR:-$PWD/target}")
  [ -x "$old" ] && [ -x "$new" ] || { echo "bench-compare: $bench did not build" >&2; exit 1; }
  case "$bench" in
    fanout)
      ulimit -n 65536 2>/dev/null || true
      echo "== fanout: inloop (now) beside inloop-before ($rev), one run"
      # shellcheck disable=SC2086
      "$new" --only inloop --only inloop-before --baseline "$old" ${FANOUT_ARGS:-}
      ;;
    *)
      args=()
      [ "$bench" = handoff ] && args=(--runs "${HANDOFF_RUNS:-200}")
      for round in $(seq "$rounds"); do
        echo "== $bench, round $round: before ($rev)"
        BENCH_RUNS=${BENCH_RUNS:-32} "$old" "${args[@]}"
        echo "== $bench, round $round: now ($(git rev-parse --short HEAD)+working tree)"
        BENCH_RUNS=${BENCH_RUNS:-32} "$new" "${args[@]}"
      done
      ;;
  esac
done
