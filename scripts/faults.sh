#!/usr/bin/env bash
# Faults under load (issue 16 §2), at length: `eapay-terminal bench` makes
# full payments while eapay-server is SIGKILLed and restarted --kills times
# on the same ports and SQLite ledger; then the bench's stored reversals are
# flushed and what every simulated terminal concluded is reconciled against
# the ledger (eapay-reconcile, tests/src/reconcile.rs). tests/tests/
# faults_under_load.rs is the short form that CI runs.
#
# Usage: scripts/faults.sh [--kills N] [--seconds S] [--cards C] [--rate R]
#                          [--concurrency T] [--method aka|aka-prime|sim|tls|ttls]
#                          [--release] [--results DIR]
#
#   --kills N        SIGKILLs during the run (10), each at a random moment of
#                    its share of the run (none in the first or last share)
#   --seconds S      length of the run (300)
#   --cards C        cards issued in bulk, 100,000,000 minor units each (64)
#   --rate R         payments started per second, open loop (50)
#   --concurrency T  simulated terminals (16)
#   --method M       the cards' EAP method (aka)
#   --release        release binaries (cargo build --release); default: the
#                    debug ones, with overflow checks and no long build
#   --results DIR    where everything goes (target/faults-results/<UTC time>)
#
# Prints the report line, "attempted N approved A declined D in_doubt I
# reversed R lost L double X (...)", and exits 0 when nothing is lost,
# double, stranded, unbalanced or unaudited, 1 otherwise, 2 on a setup
# error. The server and the bench run under nice (FAULTS_NICE, 10): the
# machine is shared. EAPAY_BIN_DIR: take the binaries from there, no build.
set -Eeuo pipefail

ME=faults.sh
SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SCRIPT_PATH")/.." && pwd)

die() {
    echo "$ME: $*" >&2
    exit 2
}

KILLS=10 SECONDS_=300 CARDS=64 RATE=50 CONCURRENCY=16 METHOD=aka PROFILE=debug RESULTS=
number() { [[ ${2:-} =~ ^[0-9]+$ ]] || die "$1 needs a whole number (not '${2:-}')"; }
while [[ $# -gt 0 ]]; do
    case $1 in
    --kills) number "$1" "${2:-}"; KILLS=$2; shift 2 ;;
    --seconds) number "$1" "${2:-}"; SECONDS_=$2; shift 2 ;;
    --cards) number "$1" "${2:-}"; CARDS=$2; shift 2 ;;
    --rate) number "$1" "${2:-}"; RATE=$2; shift 2 ;;
    --concurrency) number "$1" "${2:-}"; CONCURRENCY=$2; shift 2 ;;
    --method) METHOD=${2:-}; shift 2 || die "--method needs a method" ;;
    --release) PROFILE=release; shift ;;
    --results) RESULTS=${2:-}; shift 2 || die "--results needs a directory" ;;
    -h | --help) sed -n '2,/^set -Eeuo/p' "$SCRIPT_PATH" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[[ $SECONDS_ -ge 1 && $RATE -ge 1 && $CONCURRENCY -ge 1 ]] || die "--seconds, --rate and --concurrency must be at least 1"
[[ $CARDS -ge $CONCURRENCY ]] || die "--cards $CARDS is fewer than --concurrency $CONCURRENCY (each terminal needs a card)"
case $METHOD in
aka | aka-prime | sim) ISSUE_EXTRA=() ;;
tls) ISSUE_EXTRA=() ;;
ttls) ISSUE_EXTRA=(--pin 1234) ;;
*) die "--method must be aka, aka-prime, sim, tls or ttls (not '$METHOD')" ;;
esac
NICE=${FAULTS_NICE:-10}

TARGET=${CARGO_TARGET_DIR:-$REPO/target}
if [[ -n ${EAPAY_BIN_DIR:-} ]]; then
    BIN=$EAPAY_BIN_DIR
else
    echo "== build ($PROFILE)"
    release=()
    [[ $PROFILE == release ]] && release=(--release)
    (cd "$REPO" && cargo build "${release[@]}" --bin eapay-server --bin eapay-terminal --bin eapay-reconcile)
    BIN=$TARGET/$PROFILE
fi
for b in eapay-server eapay-terminal eapay-reconcile; do
    [[ -x $BIN/$b ]] || die "$BIN/$b not found"
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=${RESULTS:-$TARGET/faults-results/$STAMP}
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/eapay-faults.XXXXXX")
SERVER_PID= BENCH_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in $BENCH_PID $SERVER_PID; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SECRET=faults-$RANDOM$RANDOM
DATA=$WORK/data
CONFIG=$DATA/eapay.toml
"$BIN/eapay-server" init --data-dir "$DATA" --realm faults.example --radius-secret "$SECRET" \
    --radius-listen 127.0.0.1:0 --diameter-listen 127.0.0.1:0 >/dev/null
# Every card pays several times a second: no per-card velocity limit.
grep -q '^velocity_max' "$CONFIG" || die "$CONFIG has no [payment] velocity_max to set"
sed -i 's/^velocity_max = .*/velocity_max = 0/' "$CONFIG"
"$BIN/eapay-server" card issue --config "$CONFIG" --method "$METHOD" --count "$CARDS" --card-dir "$WORK/cards" \
    --limit 100000000 "${ISSUE_EXTRA[@]}" >/dev/null

# serve N: starts eapay-server (output appended to RESULTS/server.out/.err)
# and waits for its listening lines; sets SERVER_PID, AUTH, ACCT. A port
# that another process took while the server was down is tried again.
serve() {
    local try
    for ((try = 0; try < 50; try++)); do
        local mark=0
        [[ -f $RESULTS/server.out ]] && mark=$(wc -l <"$RESULTS/server.out")
        echo "--- start $1 $(date -u +%H:%M:%S.%N)" >>"$RESULTS/server.err"
        nice -n "$NICE" "$BIN/eapay-server" serve --config "$CONFIG" >>"$RESULTS/server.out" 2>>"$RESULTS/server.err" &
        SERVER_PID=$!
        AUTH= ACCT=
        for ((i = 0; i < 400; i++)); do
            AUTH=$(tail -n +"$((mark + 1))" "$RESULTS/server.out" | sed -n 's/^listening radius auth //p' | head -1)
            ACCT=$(tail -n +"$((mark + 1))" "$RESULTS/server.out" | sed -n 's/^listening radius acct //p' | head -1)
            [[ -n $AUTH && -n $ACCT ]] && return 0
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.05
        done
        wait "$SERVER_PID" 2>/dev/null || true
        tail -n 3 "$RESULTS/server.err" | grep -q 'Address already in use' || {
            tail -n 20 "$RESULTS/server.err" >&2
            die "eapay-server did not start"
        }
        sleep 0.2
    done
    die "eapay-server could not bind its ports again"
}

serve 0
# The same ports after every restart: the bench keeps sending to them.
DIAMETER=$(sed -n 's/^listening diameter //p' "$RESULTS/server.out" | head -1)
sed -i "s/^auth_listen = .*/auth_listen = \"$AUTH\"/; s/^acct_listen = .*/acct_listen = \"$ACCT\"/" "$CONFIG"
[[ -n $DIAMETER ]] && sed -i "s/^listen = .*/listen = \"$DIAMETER\"/" "$CONFIG"
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
serve 1

echo "== $SECONDS_ s of $METHOD payments at $RATE/s, $CONCURRENCY terminals, $CARDS cards, $KILLS SIGKILLs; results in $RESULTS"
nice -n "$NICE" "$BIN/eapay-terminal" bench --method "$METHOD" --cards "$CARDS" --card-dir "$WORK/cards" \
    --server "$AUTH" --secret "$SECRET" --concurrency "$CONCURRENCY" --rate "$RATE" --duration "${SECONDS_}s" \
    --merchant M-DEMO --amount 0.25 --currency USD --timeout 500ms --retries 3 \
    --outcomes "$RESULTS/outcomes.jsonl" --reversals "$RESULTS/reversals.json" \
    --json "$RESULTS/bench.json" >"$RESULTS/bench.txt" 2>"$RESULTS/bench.err" &
BENCH_PID=$!
STARTED=$(date +%s%N)
: >"$RESULTS/kills.txt"
SHARE_MS=$((SECONDS_ * 1000 / (KILLS + 1)))
((SHARE_MS > 0)) || die "--seconds $SECONDS_ is too short for --kills $KILLS"
for ((k = 1; k <= KILLS; k++)); do
    # Kill k at a random moment of the middle of share k of KILLS + 1 equal
    # shares: a fixed schedule would hit the same round of a payment each
    # time (the open loop starts them on a fixed grid).
    at=$((STARTED + (k * SHARE_MS - SHARE_MS / 2 + (RANDOM * 32768 + RANDOM) % SHARE_MS) * 1000000))
    now=$(date +%s%N)
    ((at > now)) && sleep "$(awk -v ns=$((at - now)) 'BEGIN { printf "%.3f", ns / 1e9 }')"
    kill -0 "$BENCH_PID" 2>/dev/null || die "the bench ended before kill $k (see $RESULTS/bench.err)"
    kill -KILL "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    echo "kill $k at +$(awk -v ns=$(($(date +%s%N) - STARTED)) 'BEGIN { printf "%.3f", ns / 1e9 }') s" | tee -a "$RESULTS/kills.txt"
    serve $((k + 1))
done
BENCH_RC=0
wait "$BENCH_PID" || BENCH_RC=$?
BENCH_PID=
cat "$RESULTS/bench.txt"
[[ $BENCH_RC -eq 0 ]] || die "the bench failed ($BENCH_RC): $(tail -n 3 "$RESULTS/bench.err")"

echo "== flush the stored reversals"
"$BIN/eapay-terminal" flush --server "$AUTH" --acct-server "$ACCT" --secret "$SECRET" \
    --reversals "$RESULTS/reversals.json" --wait 60s >"$RESULTS/flush.txt" 2>&1 ||
    die "flush failed: $(tail -n 3 "$RESULTS/flush.txt")"
tail -n 1 "$RESULTS/flush.txt"
"$BIN/eapay-server" txn export --format jsonl --out "$RESULTS/ledger.jsonl" --config "$CONFIG"
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=

echo "== reconcile"
RC=0
"$BIN/eapay-reconcile" --outcomes "$RESULTS/outcomes.jsonl" --ledger "$RESULTS/ledger.jsonl" \
    >"$RESULTS/report.txt" 2>"$RESULTS/problems.txt" || RC=$?
[[ $RC -le 1 ]] || die "eapay-reconcile failed: $(cat "$RESULTS/problems.txt")"
head -n 20 "$RESULTS/problems.txt" >&2
echo "faults: $KILLS kills in $SECONDS_ s, $METHOD at $RATE/s, $CARDS cards: $(cat "$RESULTS/report.txt")" | tee "$RESULTS/summary.txt"
exit "$RC"
