#!/usr/bin/env bash
# Fuzz seeds from the interop tests' captures (FUZZING.md "Seeds"): runs the
# tests crate with EAPAY_FUZZ_SEEDS, so every capture that passes its judge
# writes the RADIUS datagrams, Diameter messages and EAP packets the real
# peers and eapay exchanged (tests/src/capture/seeds.rs), then merges into
# fuzz/corpus/ only the inputs that add coverage (libFuzzer -merge=1).
#
# Usage: scripts/capture-seeds.sh [NEXTEST-ARGS...]
#   NEXTEST-ARGS  which tests to run (default: all of the tests crate),
#                 e.g. -E 'binary(eapol_interop)'
# Needs what the interop tests need (scripts/test builds eapol_test, hostapd
# and freeDiameter) and cargo-fuzz.
set -euo pipefail

ME=capture-seeds.sh
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
cargo fuzz --version >/dev/null 2>&1 || { echo "$ME: cargo-fuzz is not installed" >&2; exit 2; }

SEEDS=$(mktemp -d "${TMPDIR:-/tmp}/eapay-seeds.XXXXXX")
trap 'rm -rf "$SEEDS"' EXIT
cargo build --workspace --bins
# A failing test leaves no seeds of its own; the others still count.
EAPAY_FUZZ_SEEDS=$SEEDS cargo nextest run -p eapay-tests --no-fail-fast "$@" || echo "$ME: some tests failed" >&2

export RUSTC_BOOTSTRAP=1
for target in radius_packet diameter_message eap_packet sim_aka_attributes; do
    [[ -d $SEEDS/$target ]] || continue
    before=$(find "fuzz/corpus/$target" -type f | wc -l)
    cargo fuzz run --target-dir fuzz/target/address "$target" "fuzz/corpus/$target" "$SEEDS/$target" \
        -- -merge=1 >"$SEEDS/$target.log" 2>&1 || { tail -5 "$SEEDS/$target.log" >&2; exit 1; }
    after=$(find "fuzz/corpus/$target" -type f | wc -l)
    echo "$target: $(find "$SEEDS/$target" -type f | wc -l) packets captured, $((after - before)) added to the corpus ($after inputs)"
done
