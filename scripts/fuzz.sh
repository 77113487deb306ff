#!/usr/bin/env bash
# Runs inloop's cargo fuzz targets (fuzz/) one after the other. See docs/SECURITY-fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(sync_frame chunks room lease token ipynb)

usage() {
    cat <<'EOF'
Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
       scripts/fuzz.sh --replay [TARGET...]
       scripts/fuzz.sh --list | --help

Runs each cargo fuzz target of fuzz/ (all of them unless TARGETs are named) for SECONDS
(default 60), one after the other, at the lowest CPU priority (nice 19), one job at a time.
Prints per target the executions run and whether it found a crash; exits 1 if any target
crashed (or timed out, or ran out of memory).

  --list      list the targets and what each checks
  --replay    run each target once over its saved inputs in fuzz/regressions/TARGET/ (the
              crashes found so far) and fail if any still crashes: a fixed bug stays fixed
  --help      this text

Each target starts from its corpus fuzz/corpus/TARGET/ (kept between runs, not committed) and
its seeds: fuzz/seeds/TARGET/, fuzz/regressions/TARGET/ and, for ipynb, tests/fixtures/.
A crashing input is written to fuzz/artifacts/TARGET/; the full libFuzzer log of the last run is
fuzz/logs/TARGET.log. Reproduce one with
  RUSTC_BOOTSTRAP=1 cargo fuzz run -O TARGET fuzz/artifacts/TARGET/crash-...
(or keep it: copy it into fuzz/regressions/TARGET/).

cargo-fuzz is installed with `cargo install cargo-fuzz` when missing. It needs nightly's
-Zsanitizer; this stable toolchain takes it with RUSTC_BOOTSTRAP=1, which the script sets.
Environment:
  FUZZ_SANITIZER   address (default) or none (faster, no AddressSanitizer)
  FUZZ_NICE        the nice level (default 19)
  INLOOP_FUZZ_KNOWN=F2,...  relax the checks of these open bugs (docs/SECURITY-fuzzing.md),
                   so that a run explores past them
  FUZZ_DEBUG_ASSERTIONS=1   debug assertions in every crate, yrs included (as a debug build of
                   the relay runs: yrs then panics on client ids of 2^53 and more, bug F1)
EOF
}

describe() {
    cat <<'EOF'
sync_frame  inloop_sync::wire::decode on arbitrary bytes; what decodes re-encodes and decodes equal
chunks      chunks::Reassembly from several peers sharing a budget: frames back whole, heap within budget
room        inloop_sync::Room with read/edit/execute/runtime peers: read peers never change the document
lease       inloop_sync::Lease messages, ticks and disconnections: one holder, epochs never go back
token       TokenKey::verify on arbitrary and signed-arbitrary tokens; sign -> verify round trip
ipynb       Notebook::from_ipynb_bytes / ipynb_to_update_v1 / replace_from_ipynb; export imports again
EOF
}

SECONDS_EACH=60
REPLAY=0
SELECTED=()
for arg in "$@"; do
    case "$arg" in
        -h | --help) usage; exit 0 ;;
        --list) describe; exit 0 ;;
        --replay) REPLAY=1 ;;
        -*) echo "unknown option $arg (see --help)" >&2; exit 2 ;;
        *)
            if [[ "$arg" =~ ^[0-9]+$ ]]; then
                SECONDS_EACH=$arg
            elif [[ " ${TARGETS[*]} " == *" $arg "* ]]; then
                SELECTED+=("$arg")
            else
                echo "unknown target $arg (targets: ${TARGETS[*]})" >&2
                exit 2
            fi
            ;;
    esac
done
[[ ${#SELECTED[@]} -gt 0 ]] || SELECTED=("${TARGETS[@]}")

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz
fi

export RUSTC_BOOTSTRAP=1
SANITIZER=${FUZZ_SANITIZER:-address}
NICE=${FUZZ_NICE:-19}
# Debug assertions and overflow checks are set per package in fuzz/Cargo.toml (on for inloop's
# crates, off for dependencies, as a release relay runs them), so -O and not `-a` (cargo fuzz
# without -O, or with -a, adds -Cdebug-assertions for every crate).
# FUZZ_DEBUG_ASSERTIONS=1 adds -a.
FUZZ_FLAGS=(-O --sanitizer "$SANITIZER")
[[ ${FUZZ_DEBUG_ASSERTIONS:-0} == 1 ]] && FUZZ_FLAGS+=(-a)

echo "building the fuzz targets (sanitizer: $SANITIZER)"
nice -n "$NICE" cargo fuzz build "${FUZZ_FLAGS[@]}"

# libFuzzer options per target: the largest input tried, and a dictionary where one helps.
options_for() {
    case "$1" in
        ipynb) echo "-max_len=65536 -dict=fuzz/dicts/ipynb.dict" ;;
        sync_frame) echo "-max_len=8192" ;;
        # Sequences of steps: long inputs from the start (libFuzzer's default grows the length
        # limit slowly, which kept room's inputs under 100 bytes in 10 minutes).
        room) echo "-max_len=4096 -len_control=0" ;;
        *) echo "-max_len=4096" ;;
    esac
}

mkdir -p fuzz/logs
if [[ $REPLAY == 1 ]]; then
    failed=0
    for target in "${SELECTED[@]}"; do
        dir=fuzz/regressions/$target
        inputs=()
        [[ -d $dir ]] && mapfile -t inputs < <(find "$dir" -type f ! -name '*.md' | sort)
        if [[ ${#inputs[@]} -eq 0 ]]; then
            printf '%-11s no saved inputs\n' "$target"
            continue
        fi
        for input in "${inputs[@]}"; do
            if nice -n "$NICE" cargo fuzz run "${FUZZ_FLAGS[@]}" "$target" "$input" \
                >"fuzz/logs/replay.log" 2>&1; then
                printf '%-11s ok     %s\n' "$target" "$input"
            else
                printf '%-11s CRASH  %s\n' "$target" "$input"
                failed=1
            fi
        done
    done
    exit $failed
fi

failed=0
summary=()
for target in "${SELECTED[@]}"; do
    corpus=fuzz/corpus/$target
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    seeds=()
    for dir in "fuzz/seeds/$target" "fuzz/regressions/$target"; do
        [[ -d $dir ]] && seeds+=("$dir")
    done
    [[ $target == ipynb ]] && seeds+=(tests/fixtures)
    log=fuzz/logs/$target.log
    echo "fuzzing $target for ${SECONDS_EACH}s (log: $log)"
    set +e
    # shellcheck disable=SC2046
    nice -n "$NICE" cargo fuzz run "${FUZZ_FLAGS[@]}" "$target" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$SECONDS_EACH" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
        $(options_for "$target") >"$log" 2>&1
    status=$?
    set -e
    executions=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
    if [[ -z $executions ]]; then
        # A crash ends libFuzzer before its final stats: take the last progress line.
        executions=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
    fi
    artifact=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -1 | sed 's/Test unit written to //' || true)
    if [[ $status == 0 ]]; then
        result="no crash"
    else
        failed=1
        kind=$(grep -oE 'ERROR: libFuzzer: [a-z-]+|panicked at [^ ]+' "$log" | head -1 || true)
        result="CRASH (${kind:-exit $status}) ${artifact:-see $log}"
    fi
    line=$(printf '%-11s %12s executions in %ss: %s' "$target" "${executions:-?}" "$SECONDS_EACH" "$result")
    echo "$line"
    summary+=("$line")
done

echo
echo "summary:"
printf '%s\n' "${summary[@]}"
exit $failed
