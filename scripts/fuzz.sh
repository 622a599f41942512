#!/usr/bin/env bash
# The fuzz targets of fuzz/ (cargo fuzz, libFuzzer, AddressSanitizer), on the
# stable toolchain (RUSTC_BOOTSTRAP=1: cargo fuzz passes -Z flags).
#
# Usage: scripts/fuzz.sh [--seconds N] [--jobs J] [--sanitizer S] [--replay] [TARGET...]
#   --seconds N  fuzz each target for N seconds (default 60), growing its
#                corpus in fuzz/corpus/TARGET; prints executions, coverage
#                and crashes per target (the FUZZING.md table)
#   --replay     run every input of each corpus once, no mutation (CI)
#   --jobs J     targets at a time (default: the number of cores)
#   --sanitizer S  address (default) or none: our code forbids unsafe, so
#                AddressSanitizer watches only the dependencies' unsafe
#                code, at 10x the cost per execution; the long SIM/AKA runs
#                use none (panics, overflow checks and the targets' own
#                checks still fail the run). See FUZZING.md
#   TARGET...    some targets only (default: all, `cargo fuzz list`)
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). A crash leaves its
# input in fuzz/artifacts/TARGET/ and makes the script fail.
set -euo pipefail

ME=fuzz.sh
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
die() {
    echo "$ME: $*" >&2
    exit 2
}

SECONDS_EACH=60 REPLAY=0 JOBS=$(nproc) SANITIZER=address TARGETS=()
while [[ $# -gt 0 ]]; do
    case $1 in
    --seconds) SECONDS_EACH=${2:-}; shift 2 || die "--seconds needs a number" ;;
    --jobs) JOBS=${2:-}; shift 2 || die "--jobs needs a number" ;;
    --sanitizer) SANITIZER=${2:-}; shift 2 || die "--sanitizer needs address or none" ;;
    --replay) REPLAY=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) TARGETS+=("$1"); shift ;;
    esac
done
[[ $SECONDS_EACH =~ ^[0-9]+$ && $SECONDS_EACH -gt 0 ]] || die "--seconds must be a positive number"
[[ $JOBS =~ ^[0-9]+$ && $JOBS -gt 0 ]] || die "--jobs must be a positive number"
[[ $SANITIZER == address || $SANITIZER == none ]] || die "--sanitizer must be address or none"
cargo fuzz --version >/dev/null 2>&1 || die "cargo-fuzz is not installed: cargo install cargo-fuzz --locked"

export RUSTC_BOOTSTRAP=1
# One build directory per sanitizer: a run without one and a replay with
# AddressSanitizer do not rebuild each other's targets.
BUILD=(-s "$SANITIZER" --target-dir "fuzz/target/$SANITIZER")
cargo fuzz build "${BUILD[@]}"
[[ ${#TARGETS[@]} -gt 0 ]] || mapfile -t TARGETS < <(cargo fuzz list)

LOGS=$(mktemp -d "${TMPDIR:-/tmp}/eapay-fuzz.XXXXXX")
trap 'rm -rf "$LOGS"' EXIT

one() {
    local target=$1 corpus=fuzz/corpus/$1
    mkdir -p "$corpus"
    if [[ $REPLAY -eq 1 ]]; then
        cargo fuzz run "${BUILD[@]}" "$target" "$corpus" -- -runs=0 >"$LOGS/$target.log" 2>&1
    else
        cargo fuzz run "${BUILD[@]}" "$target" "$corpus" -- -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
            >"$LOGS/$target.log" 2>&1
    fi
}

failed=()
running=0
for target in "${TARGETS[@]}"; do
    ( one "$target" || touch "$LOGS/$target.failed" ) &
    running=$((running + 1))
    if [[ $running -ge $JOBS ]]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait

printf '| target | inputs | executions | exec/s | cov | ft | corpus | result |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n'
for target in "${TARGETS[@]}"; do
    log=$LOGS/$target.log
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    inputs=$(find "fuzz/corpus/$target" -type f | wc -l)
    result=ok
    if [[ -e $LOGS/$target.failed ]]; then
        result="FAILED (see fuzz/artifacts/$target/)"
        failed+=("$target")
        grep -E 'panicked|ERROR: |SUMMARY' "$log" | head -5 >&2 || true
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$target" "$inputs" "${execs:--}" "${rate:--}" \
        "${cov:--}" "${ft:--}" "$(du -sb "fuzz/corpus/$target" | cut -f1) B" "$result"
done
[[ ${#failed[@]} -eq 0 ]] || die "crashed or failed: ${failed[*]}"
