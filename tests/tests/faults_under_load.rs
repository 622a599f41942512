//! Faults under load (issue 16 §2): `eapay-terminal bench` makes full
//! payments while the server is SIGKILLed and restarted three times on the
//! same ports and ledger; then the terminals' stored reversals are flushed
//! and what each terminal concluded is reconciled against the ledger
//! (`eapay_tests::reconcile`): no approval a terminal showed is missing
//! (lost), none is in the ledger twice or charged twice (double), no card
//! holds money for a payment no terminal believes approved (stranded), each
//! card's available amount is its limit less its approved, unreversed
//! payments, and the audit log has a line for every change.
//!
//! `scripts/faults.sh` runs the same for minutes with more kills
//! (BENCHMARKS.md, "Faults under load"). Nothing here is timed: the rate is
//! modest (2 shared cores) and only counts are asserted.

use std::process::Command;
use std::time::{Duration, Instant};

use eapay_tests::reconcile::reconcile_files;
use eapay_tests::{now_ms, run_with_timeout, workspace_bin, Method, Server, MERCHANT};

const CARDS: u32 = 16;
const KILLS: u32 = 3;
const RUN: Duration = Duration::from_secs(12);

#[test]
fn sigkill_and_restart_under_load_lose_no_approval_and_charge_nothing_twice() {
    // Each card pays a few times a second: no velocity limit.
    let mut server = Server::start_with_payment(&[("velocity_max", 0)]);
    server.pin_ports();
    let cards = server.issue_cards(Method::Aka, CARDS, &["--limit", "100000000"]);
    let outcomes = server.scratch("outcomes.jsonl");
    let reversals = server.scratch("reversals.json");
    let ledger = server.scratch("ledger.jsonl");

    let mut bench = Command::new(workspace_bin("eapay-terminal"));
    bench
        .arg("bench")
        .args(["--server", &server.auth.to_string(), "--secret", &server.secret])
        .arg("--card-dir")
        .arg(&cards)
        .args(["--method", "aka", "--cards", &CARDS.to_string(), "--concurrency", "8", "--rate", "50"])
        .args(["--duration", &format!("{}s", RUN.as_secs()), "--merchant", MERCHANT, "--amount", "0.25"])
        .args(["--currency", "USD"])
        // Short waits, so that a round sent to a dead server is retried
        // against the restarted one within the run.
        .args(["--timeout", "300ms", "--retries", "2"])
        .arg("--outcomes")
        .arg(&outcomes)
        .arg("--reversals")
        .arg(&reversals);

    let (run, last_restart_ms) = std::thread::scope(|s| {
        let started = Instant::now();
        let load = s.spawn(move || run_with_timeout(bench, None, Duration::from_secs(180)));
        let mut last_restart_ms = 0;
        for kill in 1..=KILLS {
            // Spread over the run, none at its very start or end, each at a
            // random moment of a payment: the open loop starts one every
            // 25 ms, and kills on a fixed schedule would hit the same round.
            let jitter = Duration::from_millis(rand::random::<u64>() % 1000);
            let at = started + RUN * kill / (KILLS + 1) - Duration::from_millis(500) + jitter;
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            assert!(!load.is_finished(), "the bench ended before kill {kill}");
            server.kill9();
            server.restart();
            last_restart_ms = now_ms();
        }
        (load.join().expect("bench thread"), last_restart_ms)
    });
    assert!(run.success(), "the bench must ride out the restarts:\n{}", run.tail(40));
    eprintln!("{}", run.stdout);

    let mut flush = Command::new(workspace_bin("eapay-terminal"));
    flush
        .arg("flush")
        .args(["--server", &server.auth.to_string(), "--acct-server", &server.acct.to_string()])
        .args(["--secret", &server.secret, "--wait", "30s"])
        .arg("--reversals")
        .arg(&reversals);
    let flushed = run_with_timeout(flush, None, Duration::from_secs(90));
    assert!(flushed.success(), "flush:\n{}", flushed.tail(40));
    assert!(flushed.stdout.contains("no reversal pending"), "{}", flushed.tail(20));

    server.admin(&["txn", "export", "--format", "jsonl", "--out", ledger.to_str().expect("utf-8 path")]);
    let report = reconcile_files(&[outcomes.as_path()], &ledger).expect("reconcile");
    eprintln!("faults under load: {KILLS} kills: {report}");
    for p in &report.problems {
        eprintln!("  {p}");
    }
    assert_eq!(report.lost, 0, "approvals lost: {:#?}", report.problems);
    assert_eq!(report.double, 0, "approved or charged twice: {:#?}", report.problems);
    assert!(report.clean(), "{report}: {:#?}", report.problems);
    assert!(report.approved > 0, "{report}");

    // The load went on after the last restart: the bench survived them.
    let text = std::fs::read_to_string(&outcomes).expect("outcomes");
    let approved_after = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("outcome line"))
        .filter(|v| v["outcome"] == "approved" && v["at_ms"].as_u64().is_some_and(|at| at > last_restart_ms))
        .count();
    assert!(approved_after > 0, "no approval after the last restart: {report}");
}
