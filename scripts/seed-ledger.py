#!/usr/bin/env python3
"""Fill a SQLite ledger with past authorizations, for `scripts/bench.sh --scale`.

Usage: seed-ledger.py --ledger PATH --merchant ID --client NAME --count N

Adds N authorizations of the merchant, spread over the ledger's cards and
over the 30 days before the last hour, each with its audit line, as a server
would have written them: 90% captured, 5% declined (code 51), 5% reversed;
random 16-byte terminal nonces; unique approval codes and transaction ids.
Every row is older than the nonce memory (2 x 5 min) and the velocity window
(1 min), so the decisions of the bench that follows must find their way past
this history through the indexes, never use it.

A bench fixture, not a ledger tool: it writes with synchronous=OFF (a crash
while seeding only loses the fixture) and expects the schema of this commit.
"""

import argparse
import os
import random
import sqlite3
import sys
import time

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
CODE_SPACE = 36**6
# Odd and coprime with 36^6 (= 2^12 * 3^12): i -> i * STRIDE mod 36^6 is a
# permutation, so the first N codes are all different, and none looks like
# the next.
STRIDE = 1_000_000_007


def approval_code(i: int) -> str:
    n = (i * STRIDE) % CODE_SPACE
    out = []
    for _ in range(6):
        n, r = divmod(n, 36)
        out.append(ALPHABET[r])
    return "".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ledger", required=True, help="the SQLite ledger file")
    p.add_argument("--merchant", required=True, help="merchant id (must be registered)")
    p.add_argument("--client", required=True, help="the RADIUS client the rows name")
    p.add_argument("--count", required=True, type=int, help="authorizations to add")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = p.parse_args()
    if args.count < 0:
        print("seed-ledger.py: --count must be >= 0", file=sys.stderr)
        return 2
    if not os.path.exists(args.ledger):
        print(f"seed-ledger.py: no ledger at {args.ledger}", file=sys.stderr)
        return 2

    rng = random.Random(args.seed)
    db = sqlite3.connect(args.ledger, timeout=30, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    if not db.execute("SELECT 1 FROM merchants WHERE merchant_id = ?", (args.merchant,)).fetchone():
        print(f"seed-ledger.py: merchant {args.merchant} is not in the ledger", file=sys.stderr)
        return 2
    cards = [r[0] for r in db.execute("SELECT card_id FROM cards ORDER BY card_id")]
    if not cards:
        print("seed-ledger.py: the ledger has no cards", file=sys.stderr)
        return 2
    start = db.execute("SELECT COALESCE(MAX(id), 0) FROM authorizations").fetchone()[0]

    now_ms = int(time.time() * 1000)
    newest = now_ms - 3_600_000
    oldest = newest - 30 * 86_400_000
    chunk = 20_000
    done = 0
    t0 = time.time()
    while done < args.count:
        n = min(chunk, args.count - done)
        auths, audits = [], []
        for k in range(done, done + n):
            i = start + k + 1
            card = rng.choice(cards)
            at = rng.randint(oldest, newest)
            amount = rng.randint(100, 50_000)
            roll = rng.random()
            txn = f"seed-{i}"
            if roll < 0.05:
                status, code, decline, reason = "declined", None, 51, "insufficient funds"
                event, detail = "authorization declined", f"code=51 amount={amount} currency=840 card={card}"
            else:
                status = "reversed" if roll < 0.10 else "captured"
                code, decline, reason = approval_code(i), None, None
                event, detail = "authorization approved", f"code={code} amount={amount} currency=840 card={card}"
            auths.append(
                (
                    i, args.merchant, txn, card, amount, rng.randbytes(16), at, rng.randbytes(64), status,
                    code, decline, reason, args.client, at, at,
                    rng.randbytes(110) if code else None,
                )
            )
            audits.append((at, args.client, event, i, card, args.merchant, txn, detail))
        db.execute("BEGIN")
        db.executemany(
            """INSERT INTO authorizations (id, merchant_id, transaction_id, card_id, amount, currency,
                   installments, terminal_nonce, terminal_time_ms, details, status, approval_code,
                   decline_code, decline_reason, method, confirmation, client, created_at_ms,
                   updated_at_ms, receipt)
               VALUES (?, ?, ?, ?, ?, 840, 0, ?, ?, ?, ?, ?, ?, ?, 'aka', 1, ?, ?, ?, ?)""",
            auths,
        )
        db.executemany(
            """INSERT INTO audit_log (at_ms, actor, event, authorization_id, card_id, merchant_id,
                   transaction_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            audits,
        )
        db.execute("COMMIT")
        done += n
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    total = db.execute("SELECT COUNT(*) FROM authorizations").fetchone()[0]
    print(f"seeded {args.count} authorizations over {len(cards)} cards in {time.time() - t0:.1f} s; ledger has {total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
