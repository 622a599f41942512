//! `eapay-terminal bench` against a real eapay-server: full payments for
//! 30 s at a modest open-loop rate (the table, no errors), auth-only with
//! `--json` (the figures parse), SIM cards and AKA fast re-authentication,
//! and bad arguments (one line, exit 2).
//!
//! The load is kept low: the suite runs on 2 cores beside other tests, and
//! these tests check that the load generator works, not how fast.

use std::process::Command;
use std::time::Duration;

use eapay_tests::{run_with_timeout, section, stopped_counter, workspace_bin, Method, Server, ToolOutput};

fn bench(server: &Server, cards: &std::path::Path, extra: &[&str], timeout: Duration) -> ToolOutput {
    let mut cmd = Command::new(workspace_bin("eapay-terminal"));
    cmd.arg("bench")
        .args(["--server", &server.auth.to_string()])
        .args(["--secret", &server.secret])
        .arg("--card-dir")
        .arg(cards)
        .args(["--server-pid", &server.pid().to_string()])
        .args(extra);
    run_with_timeout(cmd, None, timeout)
}

/// The number after `label` on the table line that starts with `line`.
fn figure(table: &str, line: &str, label: &str) -> f64 {
    let row = table
        .lines()
        .find(|l| l.trim_start().starts_with(line))
        .unwrap_or_else(|| panic!("no {line:?} line in\n{table}"));
    let after = row.split(label).nth(1).unwrap_or_else(|| panic!("no {label:?} in {row:?}"));
    let number = after.split_whitespace().next().unwrap_or_default();
    number.parse().unwrap_or_else(|_| panic!("{label:?} in {row:?} is not a number"))
}

#[test]
fn bench_runs_full_payments_for_30_seconds_and_prints_the_table() {
    // Each card pays about 2.5 times a second: no velocity limit here.
    let server = Server::start_with_payment(&[("velocity_max", 0)]);
    let cards = server.issue_cards(Method::Aka, 8, &["--limit", "100000000"]);
    let out = bench(
        &server,
        &cards,
        &[
            "--method",
            "aka",
            "--cards",
            "8",
            "--concurrency",
            "4",
            "--rate",
            "20",
            "--duration",
            "30s",
            "--merchant",
            "M-DEMO",
            "--amount",
            "0.01",
            "--currency",
            "USD",
        ],
        Duration::from_secs(120),
    );
    assert!(out.success(), "{}", out.tail(40));
    let table = &out.stdout;
    assert!(table.contains("full payments of 0.01 USD to M-DEMO"), "{table}");
    assert!(table.contains("open loop at 20/s"), "{table}");
    let completed = figure(table, "throughput", "(");
    assert!(completed >= 300.0, "{completed} payments in 30 s at 20/s\n{table}");
    assert_eq!(figure(table, "outcomes", "approved"), completed, "every payment approved\n{table}");
    assert!(table.lines().any(|l| l.trim() == "errors       none"), "{table}");
    for p in ["p50", "p90", "p99", "p99.9", "max"] {
        assert!(figure(table, "latency ms", &format!("{p} ")) > 0.0, "{p}\n{table}");
    }
    assert!(figure(table, "server cpu", "server cpu") > 0.0, "server CPU per payment\n{table}");
    // The ledger holds the approvals, under the bench's transaction ids.
    let list = server.admin(&["txn", "list"]);
    let approved = list
        .lines()
        .filter(|l| l.contains(" approved ") && l.split_whitespace().nth(2).is_some_and(|t| t.starts_with('B')))
        .count();
    assert!(approved >= 10, "{list}");
    server.assert_running();
}

#[test]
fn bench_auth_only_writes_json_that_parses() {
    let server = Server::start_default();
    let cards = server.issue_cards(Method::AkaPrime, 4, &[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("bench.json");
    let svg = dir.path().join("bench.svg");
    let out = bench(
        &server,
        &cards,
        &[
            "--method",
            "aka-prime",
            "--cards",
            "4",
            "--concurrency",
            "2",
            "--duration",
            "3s",
            "--warmup",
            "1s",
            "--auth-only",
            "--json",
            json.to_str().expect("utf-8"),
            "--plot",
            svg.to_str().expect("utf-8"),
        ],
        Duration::from_secs(60),
    );
    assert!(out.success(), "{}", out.tail(40));
    assert!(out.stdout.contains("authentication only"), "{}", out.stdout);
    let text = std::fs::read_to_string(&json).expect("--json file");
    let v: serde_json::Value = serde_json::from_str(&text).expect("--json is JSON");
    let number = |path: &str| {
        v.pointer(path)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or_else(|| panic!("{path} is not a number in\n{text}"))
    };
    assert_eq!(v["mode"], "auth-only");
    assert_eq!(v["method"], "aka-prime");
    let completed = number("/completed");
    assert!(completed > 0.0, "{text}");
    // eapay-server runs the whole method, then declines an authentication
    // that carries no payment with 12; an Access-Accept would count as
    // authenticated.
    let declined_12 = v.pointer("/outcomes/declined/12 Invalid-Transaction").and_then(serde_json::Value::as_f64);
    assert_eq!(number("/outcomes/authenticated") + declined_12.unwrap_or(0.0), completed, "{text}");
    // Every conversation got past the identity round: the method ran.
    let trips = v["round_trips"].as_object().expect("round_trips");
    assert!(trips.keys().all(|k| k.parse::<u32>().is_ok_and(|n| n >= 2)), "{text}");
    assert_eq!(trips.values().filter_map(serde_json::Value::as_f64).sum::<f64>(), completed);
    assert_eq!(number("/errors_total"), 0.0, "{text}");
    assert!(number("/throughput_per_s") > 0.0);
    let (p50, p99, max) = (number("/latency_us/p50"), number("/latency_us/p99"), number("/latency_us/max"));
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{p50} {p99} {max}");
    assert!(number("/cpu/server/ms_per_completed") >= 0.0);
    assert!(number("/cpu/load_generator/cpu_s") >= 0.0);
    assert!(v["timeline"].as_array().is_some_and(|t| t.len() >= 4), "one entry per second");
    assert!(v["distribution"].as_array().is_some_and(|d| !d.is_empty()));
    let plot = std::fs::read_to_string(&svg).expect("--plot file");
    assert!(plot.starts_with("<svg") && plot.trim_end().ends_with("</svg>"), "{plot}");
    assert!(plot.contains("Latency over time") && plot.contains("Latency distribution"));
}

/// `--protocol diameter`: the simulated terminals share one connection to
/// the server's Diameter port; full payments are approved and the table and
/// JSON say which protocol carried them.
#[test]
fn bench_pays_over_diameter() {
    let server = Server::start_with_payment(&[("velocity_max", 0)]);
    let cards = server.issue_cards(Method::Aka, 4, &["--limit", "100000000"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("bench.json");
    let mut cmd = Command::new(workspace_bin("eapay-terminal"));
    cmd.arg("bench")
        .args(["--protocol", "diameter", "--server", &server.diameter.expect("Diameter").to_string()])
        .args(["--origin-host", "demo-terminal.issuer.test", "--destination-realm", "issuer.test"])
        .args(["--method", "aka", "--cards", "4", "--concurrency", "2", "--duration", "2s", "--warmup", "0s"])
        .args(["--card-dir", cards.to_str().expect("utf-8"), "--json", json.to_str().expect("utf-8")])
        .args(["--server-pid", &server.pid().to_string()]);
    let out = run_with_timeout(cmd, None, Duration::from_secs(60));
    assert!(out.success(), "{}\n{}", out.tail(40), server.stderr());
    assert!(out.stdout.contains("EAP-AKA over Diameter, full payments of 0.01 USD to M-DEMO"), "{}", out.stdout);
    assert!(out.stdout.contains("DERs per conversation"), "{}", out.stdout);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("JSON");
    assert_eq!(v["protocol"], "diameter");
    let completed = v["completed"].as_f64().expect("completed");
    assert!(completed > 0.0 && v["outcomes"]["approved"].as_f64() == Some(completed), "{v}");
    assert_eq!(v["errors_total"].as_f64(), Some(0.0), "{v}");
}

/// `--protocol diameter --transport tls`: the simulated terminals share one
/// Diameter/TLS connection, made with the certificate `terminal issue`
/// wrote; the table and JSON say Diameter/TLS.
#[test]
fn bench_pays_over_diameter_tls() {
    let (server, cred) = Server::start_with_diameter_tls_terminal_and(&[("velocity_max", 0)]);
    let cards = server.issue_cards(Method::Aka, 4, &["--limit", "100000000"]);
    let json = server.scratch("bench.json");
    let mut cmd = Command::new(workspace_bin("eapay-terminal"));
    cmd.arg("bench")
        .args(["--protocol", "diameter", "--server", &server.diameter_tls.expect("Diameter/TLS").to_string()])
        .args(eapay_tests::radsec::diameter_tls_args(&server, &cred))
        .args(["--origin-host", "demo-terminal.issuer.test", "--destination-realm", "issuer.test"])
        .args(["--method", "aka", "--cards", "4", "--concurrency", "2", "--duration", "2s", "--warmup", "0s"])
        .args(["--card-dir", cards.to_str().expect("utf-8"), "--json", json.to_str().expect("utf-8")]);
    let out = run_with_timeout(cmd, None, Duration::from_secs(60));
    assert!(out.success(), "{}\n{}", out.tail(40), server.stderr());
    assert!(out.stdout.contains("EAP-AKA over Diameter/TLS, full payments of 0.01 USD to M-DEMO"), "{}", out.stdout);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("JSON");
    assert_eq!((v["protocol"].as_str(), v["transport"].as_str()), (Some("diameter"), Some("tls")), "{v}");
    let completed = v["completed"].as_f64().expect("completed");
    assert!(completed > 0.0 && v["outcomes"]["approved"].as_f64() == Some(completed), "{v}");
    assert_eq!(v["errors_total"].as_f64(), Some(0.0), "{v}");
    server.assert_running();
}

/// `--method sim` plays SIM cards (full authentications: `--resumption` is
/// off by default for the SIM/AKA family, although the cards get
/// re-authentication identities), and `--method aka --resumption on` makes
/// the measured conversations fast re-authentications, which the server
/// honours (it allows 1000 in a row here, so none falls back to a full one).
#[test]
fn bench_plays_sim_cards_and_aka_fast_reauthentication() {
    let server = Server::start_with("issuer.test", "eapay-test-secret", |config| {
        section(config, "eap").insert("fast_reauth_limit".into(), toml::Value::Integer(1000));
        // Each card pays many times a second.
        section(config, "payment").insert("velocity_max".into(), toml::Value::Integer(0));
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |method: Method, extra: &[&str]| {
        let cards = server.issue_cards(method, 4, &["--limit", "100000000"]);
        let json = dir.path().join(format!("{}.json", method.arg()));
        let mut args = vec!["--method", method.arg(), "--cards", "4", "--concurrency", "2", "--duration", "2s"];
        args.extend_from_slice(&["--json", json.to_str().expect("utf-8")]);
        args.extend_from_slice(extra);
        let out = bench(&server, &cards, &args, Duration::from_secs(60));
        assert!(out.success(), "{method:?}: {}\n{}", out.tail(40), server.stderr());
        let text = std::fs::read_to_string(&json).expect("--json file");
        let v: serde_json::Value = serde_json::from_str(&text).expect("--json is JSON");
        let completed = v["completed"].as_f64().expect("completed");
        assert!(completed > 0.0 && v["outcomes"]["approved"].as_f64() == Some(completed), "{method:?}: {text}");
        assert_eq!(v["errors_total"].as_f64(), Some(0.0), "{method:?}: {text}");
        (out.stdout, v)
    };

    let (table, sim) = run(Method::Sim, &[]);
    assert!(table.contains("EAP-SIM over RADIUS, full payments of 0.01 USD to M-DEMO, resumption off"), "{table}");
    assert_eq!((sim["resumption"].as_str(), sim["reauth_offered_share"].as_f64()), (Some("off"), Some(0.0)), "{sim}");
    assert!(sim["session_offered_share"].is_null() && sim["primed"].is_null(), "{sim}");

    let (table, aka) = run(Method::Aka, &["--resumption", "on"]);
    assert!(table.contains("started with the card's fast re-authentication identity"), "{table}");
    assert_eq!(aka["resumption"], "on");
    assert_eq!(aka["primed"]["with_reauth_identity"].as_f64(), Some(4.0), "{aka}");
    let share = aka["reauth_offered_share"].as_f64().expect("reauth_offered_share");
    assert!(share > 0.9, "{share} of the conversations started with a re-authentication identity\n{table}");
    // The server took them as re-authentications, not as unknown identities
    // followed by a full authentication.
    let stopped = server.terminate();
    let offered = aka["reauth_offered"].as_f64().expect("reauth_offered") as u64;
    assert!(stopped_counter(&stopped, "reauth_ids_used") >= offered, "{offered} offered\n{stopped}");
    assert_eq!(stopped_counter(&stopped, "reauth_ids_refused"), 0, "{stopped}");
}

#[test]
fn bench_refuses_bad_arguments_in_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cards = dir.path().to_str().expect("utf-8");
    let run = |args: &[&str]| {
        let mut cmd = Command::new(workspace_bin("eapay-terminal"));
        cmd.args(["bench", "--server", "127.0.0.1:9", "--secret", "s", "--card-dir", cards]).args(args);
        let out = run_with_timeout(cmd, None, Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(2), "{}", out.tail(10));
        assert_eq!(out.stderr.lines().count(), 1, "one line: {:?}", out.stderr);
        out.stderr
    };
    let e = run(&["--method", "peap"]);
    assert!(e.contains("unknown EAP method: use sim, aka, aka-prime, tls or ttls"), "{e}");
    let e = run(&["--method", "aka", "--cards", "3", "--concurrency", "1"]);
    assert!(e.contains("has 0 aka card(s), --cards asks for 3"), "{e}");
    assert!(e.contains("eapay-server card issue --config eapay.toml --method aka --count 3 --card-dir"), "{e}");
    let e = run(&["--method", "aka", "--cards", "2", "--concurrency", "4"]);
    assert!(e.contains("fewer than --concurrency"), "{e}");
    let e = run(&["--method", "aka", "--duration", "soon"]);
    assert!(e.contains("--duration"), "{e}");
}
