#!/usr/bin/env bash
# Full AKA payments on one PostgreSQL ledger: one eapay-server instance, then
# two at once (each with its own 500 cards and its own load generator), on
# the machine's PostgreSQL (127.0.0.1:5432, trust auth, database `test` to
# connect to; a scratch database is created and dropped).
#
# Usage: cargo build --release && scripts/bench-two-instances.sh   (D=15s by default)
set -euo pipefail
REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/eapay-two-instances.XXXXXX")
B=${CARGO_TARGET_DIR:-$REPO/target}/release
DB=eapay_bench_$$
psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
$B/eapay-server init --data-dir $W/data --realm bench.example --radius-secret sec --radius-listen 127.0.0.1:0 --diameter-listen 127.0.0.1:0 >/dev/null
C=$W/data/eapay.toml
sed -i "s|^url = .*|url = \"postgres://postgres@127.0.0.1:5432/$DB\"|; s/^velocity_max = .*/velocity_max = 0/" $C
$B/eapay-server merchant add M-DEMO --client demo-terminal --config $C >/dev/null
$B/eapay-server card issue --config $C --method aka --count 500 --card-dir $W/cards1 --limit 100000000 >/dev/null
$B/eapay-server card issue --config $C --method aka --count 500 --card-dir $W/cards2 --limit 100000000 >/dev/null
$B/eapay-server card issue --config $C --method aka --count 500 --card-dir $W/cards3 --limit 100000000 >/dev/null
cp $C $W/second.toml
EAPAY_LOG=warn $B/eapay-server serve --config $C > $W/out1 2> $W/err1 &
P1=$!
EAPAY_LOG=warn $B/eapay-server serve --config $W/second.toml > $W/out2 2> $W/err2 &
P2=$!
sleep 1.5
A1=$(sed -n 's/^listening radius auth //p' $W/out1 | head -1)
A2=$(sed -n 's/^listening radius auth //p' $W/out2 | head -1)
run() { # name server pid cards
  $B/eapay-terminal bench --method aka --cards 500 --card-dir $4 --secret sec --server $2 --server-pid $3 --concurrency 32 --duration ${D:-15s} --warmup 2s --json $W/$1.json > $W/$1.txt
}
run one "$A1" $P1 $W/cards1
echo "one instance: $(python3 -c "import json;v=json.load(open('$W/one.json'));print(round(v['throughput_per_s']), 'payments/s, p99', v['latency_us']['p99']/1000,'ms, errors', v['errors_total'])")"
run two-a "$A1" $P1 $W/${FIRST_CARDS:-cards1} &
run two-b "$A2" $P2 $W/cards2
wait %3 2>/dev/null || wait
python3 - $W <<'PY'
import json, sys
w = sys.argv[1]
a, b = (json.load(open(f"{w}/two-{x}.json")) for x in "ab")
print("two instances:", round(a["throughput_per_s"] + b["throughput_per_s"]), "payments/s together (",
      round(a["throughput_per_s"]), "+", round(b["throughput_per_s"]), "), p99", a["latency_us"]["p99"] / 1000, "/",
      b["latency_us"]["p99"] / 1000, "ms, errors", a["errors_total"] + b["errors_total"])
PY
kill $P1 $P2; wait 2>/dev/null || true
psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
rm -rf "$W"
