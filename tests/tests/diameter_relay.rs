//! Payments over Diameter through a real relay agent: freeDiameterd 1.2.1
//! (Debian's `freediameter` and `freediameter-extensions`), started by
//! `scripts/freediameter-relay.sh` between `eapay-terminal` and
//! `eapay-server`. The relay appends Route-Record to requests and answers,
//! gives each hop its own Hop-by-Hop id and forwards the eapay vendor AVPs
//! (vendor 32473, M bit clear) it does not know; it has the identity
//! `relay.issuer.test`, which the server knows as a peer named
//! `demo-terminal` acting for `M-DEMO` (a relayed request arrives on the
//! relay's connection, so that entry's merchants are the ones checked).
//!
//! - every EAP method pays through the relay as it pays directly, and a
//!   decline comes back with its code;
//! - the relay's connection to the server outlives idle periods longer than
//!   Tw (DWR/DWA) and serves the next payment without reconnecting;
//! - a stopped relay: the terminal fails over to the server's own port, or
//!   with the relay as its only path fails with one line, and a request
//!   lost with the relay leaves a reversal that `flush` delivers directly;
//! - tshark decodes a relayed payment, both hops, with the eapay AVPs by
//!   name (dictionaries/diameter/eapay.xml added to Wireshark's dictionary)
//!   and nothing malformed;
//! - over Diameter/TLS (RFC 6733 §13, the server's `[diameter.tls]` port,
//!   TLS 1.3) with a certificate from `terminal issue`: a payment is
//!   approved and the ledger names the relay's TLS entry, and nothing but
//!   the TLS handshake's SNI is in clear on that hop; the same relay with a
//!   key nobody registered gets CEA 3010, which the server counts.
//!
//! Without freeDiameterd (or tshark/dumpcap for the capture) a test prints
//! a SKIP line; under `EAPAY_REQUIRE_INTEROP=1` it fails instead.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eapay_tests::capture::Dumpcap;
use eapay_tests::terminal::{diameter_pay_args, error_lines, pay_diameter, terminal, word_after, DIAMETER_TERMINAL};
use eapay_tests::{
    find_in_path, has_token, last_lines, repo_root, run_with_timeout, section, Method, Server, ToolOutput,
    DEFAULT_LIMIT, MERCHANT, TOOL_TIMEOUT,
};

const TERMINAL: &str = DIAMETER_TERMINAL;
const RELAY: &str = "relay.issuer.test";
const SERVER_HOST: &str = "aaa.issuer.test";
const REALM: &str = "issuer.test";

// ---------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------

fn interop_required() -> bool {
    std::env::var("EAPAY_REQUIRE_INTEROP").as_deref() == Ok("1")
}

/// `found`, or (missing) a failure under `EAPAY_REQUIRE_INTEROP=1` and
/// otherwise a SKIP line and `None`.
fn need(what: &str, found: Option<PathBuf>, install: &str, test: &str) -> Option<PathBuf> {
    if found.is_some() {
        return found;
    }
    if interop_required() {
        panic!("{what} is required in CI (EAPAY_REQUIRE_INTEROP=1) but was not found: {install}");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP: {test} needs {what} ({install})");
    None
}

/// freeDiameterd: `FREEDIAMETERD`, else in PATH or /usr/bin.
fn freediameterd() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FREEDIAMETERD").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    find_in_path("freeDiameterd").or_else(|| Some(PathBuf::from("/usr/bin/freeDiameterd")).filter(|p| p.is_file()))
}

/// The directory with dict_eap.fdx and the other extensions the relay loads.
fn extensions_dir() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> =
        std::env::var_os("FREEDIAMETER_EXT_DIR").filter(|v| !v.is_empty()).map(PathBuf::from).into_iter().collect();
    candidates.push("/usr/lib/freeDiameter".into());
    candidates.push("/usr/lib/x86_64-linux-gnu/freeDiameter".into());
    candidates.push("/usr/lib/aarch64-linux-gnu/freeDiameter".into());
    candidates.into_iter().find(|dir| {
        ["dict_eap", "dict_nasreq", "rt_default", "acl_wl", "dbg_msg_dumps"]
            .iter()
            .all(|ext| dir.join(format!("{ext}.fdx")).is_file())
    })
}

/// freeDiameterd and its extensions, or `None` (skip) / a panic (CI).
fn relay_available(test: &str) -> bool {
    need("freeDiameterd", freediameterd(), "apt-get install freediameter, or set FREEDIAMETERD", test).is_some()
        && need(
            "the freeDiameter extensions (dict_eap.fdx, rt_default.fdx, acl_wl.fdx, ...)",
            extensions_dir().map(|d| d.join("dict_eap.fdx")),
            "apt-get install freediameter-extensions, or set FREEDIAMETER_EXT_DIR",
            test,
        )
        .is_some()
}

// ---------------------------------------------------------------------------
// The server and the relay
// ---------------------------------------------------------------------------

/// A server that knows the relay as the peer `demo-terminal` (M-DEMO) from
/// 127.0.0.1, besides the terminal itself; its own watchdog at Tw = `tw`.
fn server_behind_relay(tw: i64) -> Server {
    Server::start_with(REALM, "eapay-test-secret", |config| {
        let diameter = section(config, "diameter");
        diameter.insert("watchdog_secs".into(), toml::Value::Integer(tw));
        let peers = diameter
            .entry("peers")
            .or_insert_with(|| toml::Value::Array(Vec::new()))
            .as_array_mut()
            .expect("[[diameter.peers]] is an array");
        let mut relay = toml::Table::new();
        relay.insert("name".into(), "demo-terminal".into());
        relay.insert("origin_host".into(), RELAY.into());
        relay.insert("address".into(), "127.0.0.1/32".into());
        relay.insert("merchants".into(), toml::Value::Array(vec![MERCHANT.into()]));
        peers.push(toml::Value::Table(relay));
    })
}

fn script() -> PathBuf {
    repo_root().join("scripts/freediameter-relay.sh")
}

/// freeDiameterd started by scripts/freediameter-relay.sh; stopped (by its
/// pid file) when dropped.
struct Relay {
    run_dir: PathBuf,
    addr: SocketAddr,
    // Last: removed after the relay is stopped.
    _dir: tempfile::TempDir,
}

/// What the relay presents to the server over Diameter/TLS, and the CA it
/// checks the server's certificate against.
struct RelayTls {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

/// A relay that did not come up: the script's output and freeDiameter's log.
struct RelayFailure {
    out: ToolOutput,
    log: String,
}

impl Relay {
    /// Starts on a free TCP port, relaying to `server` (the eapay server's
    /// Diameter address), with TwTimer `tw`; retries if the port was taken.
    fn start(server: SocketAddr, tw: u32) -> Relay {
        Relay::try_start(server, tw, None, &[])
            .unwrap_or_else(|f| panic!("scripts/freediameter-relay.sh failed:\n{}", f.out.tail(40)))
    }

    /// [`Relay::start`] with `extra` script arguments, over Diameter/TLS to
    /// `server` (the server's `[diameter.tls]` address) with `tls`; `Err` if
    /// the script says the relay did not come up for another reason than a
    /// taken port.
    fn try_start(server: SocketAddr, tw: u32, tls: Option<&RelayTls>, extra: &[&str]) -> Result<Relay, RelayFailure> {
        let dir = tempfile::Builder::new().prefix("eapay-relay-").tempdir().expect("temp dir");
        let run_dir = dir.path().join("run");
        let mut last = None;
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free TCP port").port();
            let mut cmd = Command::new(script());
            cmd.arg("--run-dir")
                .arg(&run_dir)
                .args(["--port", &port.to_string()])
                .args(["--identity", RELAY, "--realm", REALM, "--server-host", SERVER_HOST])
                .args(["--server", &server.to_string()])
                .args(["--client-host", TERMINAL])
                .args(["--tw", &tw.to_string()])
                .args(extra);
            if let Some(tls) = tls {
                cmd.arg("--tls-cert").arg(&tls.cert).arg("--tls-key").arg(&tls.key).arg("--tls-ca").arg(&tls.ca);
            }
            if let Some(bin) = freediameterd() {
                cmd.env("FREEDIAMETERD", bin);
            }
            let out = run_with_timeout(cmd, None, TOOL_TIMEOUT);
            if out.success() {
                let listening = format!("listening diameter 127.0.0.1:{port}");
                assert!(out.stdout.lines().any(|l| l == listening), "no `{listening}` line:\n{}", out.tail(20));
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                return Ok(Relay { run_dir, addr, _dir: dir });
            }
            if !out.stderr.contains("already in use") {
                let log = std::fs::read_to_string(run_dir.join("freediameter.log")).unwrap_or_default();
                return Err(RelayFailure { out, log });
            }
            last = Some(out);
        }
        panic!("no free port for the relay after 5 tries:\n{}", last.map(|o| o.tail(20)).unwrap_or_default());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.run_dir.join("freediameter.log")).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        format!("--- freediameter.log (last lines) ---\n{}", last_lines(&self.log(), 40))
    }
}

fn stop_relay(run_dir: &Path) -> ToolOutput {
    let mut cmd = Command::new(script());
    cmd.arg("--stop").arg("--run-dir").arg(run_dir);
    if let Some(bin) = freediameterd() {
        cmd.env("FREEDIAMETERD", bin);
    }
    run_with_timeout(cmd, None, TOOL_TIMEOUT)
}

impl Drop for Relay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        // Harmless when already stopped (the pid file is gone).
        let _ = stop_relay(&self.run_dir);
    }
}

/// Sends `signal` (STOP, CONT) to a process of ours.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// A server process frozen with SIGSTOP; SIGCONT when dropped.
struct Frozen(u32);

impl Frozen {
    fn freeze(pid: u32) -> Frozen {
        signal(pid, "STOP");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-CONT").arg(self.0.to_string()).status();
    }
}

// ---------------------------------------------------------------------------
// Payments
// ---------------------------------------------------------------------------

/// `eapay-terminal pay --protocol diameter` with an in-process card, the
/// terminal's watchdog at the relay's Tw.
fn pay(servers: &[SocketAddr], card: &Path, amount: &str, reversals: &Path, extra: &[&str]) -> ToolOutput {
    let extra: Vec<&str> = ["--watchdog", "6s"].iter().chain(extra).copied().collect();
    pay_diameter(servers, card, amount, reversals, &extra)
}

/// What the terminal printed for an approval, without the values: the first
/// word of each line.
fn stdout_shape(out: &ToolOutput) -> Vec<String> {
    out.stdout.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect()
}

/// An approved payment: exit 0, `APPROVED AMOUNT USD  approval code X`, the
/// receipt verified; returns (transaction id, approval code).
fn assert_approved(out: &ToolOutput, amount: &str, what: &str, context: &dyn Fn() -> String) -> (String, String) {
    assert_eq!(out.status.code(), Some(0), "{what}:\n{}\n{}", out.all(), context());
    let first = out.stdout.lines().next().unwrap_or_default();
    let prefix = format!("APPROVED {amount} USD  approval code ");
    assert!(first.starts_with(&prefix), "{what}: {first}");
    assert!(out.stdout.contains("receipt verified with issuer key"), "{what}:\n{}", out.stdout);
    let txn = word_after(&out.stdout, "transaction").expect("transaction id");
    (txn, first[prefix.len()..].trim().to_owned())
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn every_method_pays_through_the_relay_as_directly() {
    if !relay_available("every_method_pays_through_the_relay_as_directly") {
        return;
    }
    let server = server_behind_relay(30);
    let _capture = server.capture();
    let direct = server.diameter.expect("Diameter is served");
    let relay = Relay::start(direct, 30);
    let context = || format!("{}\n--- server stderr ---\n{}", relay.log_tail(), last_lines(&server.stderr(), 40));
    let issuer_pub = server.data_dir.join("issuer.pub").display().to_string();
    let verify = ["--issuer-key", issuer_pub.as_str()];
    for method in [Method::Sim, Method::Aka, Method::AkaPrime, Method::Tls, Method::Ttls] {
        let issue: &[&str] = if method == Method::Ttls {
            &["--confirmation", "required", "--pin", "2580"]
        } else {
            &["--confirmation", "required"]
        };
        let card = server.card_with(method, issue);
        let reversals = server.scratch(&format!("reversals-{method:?}.json"));

        let directly = pay(&[direct], &card.json, "3.00", &reversals, &verify);
        let (direct_txn, _) = assert_approved(&directly, "3.00", &format!("{method:?} directly"), &context);
        let relayed = pay(&[relay.addr], &card.json, "2.00", &reversals, &verify);
        let (txn, _) = assert_approved(&relayed, "2.00", &format!("{method:?} through the relay"), &context);
        assert_eq!(stdout_shape(&relayed), stdout_shape(&directly), "{method:?}: the terminal shows the same");

        server.assert_confirmed_approval_like(&txn, &direct_txn, &format!("{method:?} through the relay"));
        assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT - 500), "{method:?}");
        assert!(!reversals.exists(), "{method:?}: no reversal owed");
    }
    // The relayed requests came over the relay's connection, under the peer
    // name the relay's entry gives (the merchant rules of demo-terminal).
    let log = relay.log();
    assert!(
        log.lines().any(|l| l.contains("SND to 'aaa.issuer.test'") && l.contains("5/268")),
        "the relay forwarded no DER:\n{}",
        relay.log_tail()
    );

    let card = server.card(Method::Aka);
    let reversals = server.scratch("reversals-decline.json");
    let declined = pay(&[relay.addr], &card.json, "10000.00", &reversals, &[]);
    assert_eq!(declined.status.code(), Some(1), "{}\n{}", declined.all(), context());
    assert!(declined.stdout.starts_with("DECLINED 61 Exceeds-Limit"), "{}", declined.stdout);
    assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT), "nothing charged");

    // A reversal (ACR, base accounting, Eapay-Settlement-Action) crosses the
    // relay as well: the amount comes back.
    let paid = pay(&[relay.addr], &card.json, "6.00", &reversals, &["--transaction-id", "RELAYED-ACR"]);
    assert_eq!(paid.status.code(), Some(0), "{}\n{}", paid.all(), context());
    assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT - 600));
    let store = serde_json::json!({"version": 1, "reversals": [{"merchant_id": MERCHANT,
        "transaction_id": "RELAYED-ACR", "amount": 600, "currency": 840, "created_ms": 1, "attempts": 0,
        "next_attempt_ms": 0}]});
    std::fs::write(&reversals, store.to_string()).expect("write the reversal store");
    let (via, r) = (relay.addr.to_string(), reversals.display().to_string());
    let flushed = terminal(&[
        "flush",
        "--protocol",
        "diameter",
        "--server",
        &via,
        "--origin-host",
        TERMINAL,
        "--destination-realm",
        REALM,
        "--reversals",
        &r,
    ]);
    assert_eq!(flushed.status.code(), Some(0), "{}\n{}", flushed.all(), context());
    assert!(flushed.stdout.contains("reversal of RELAYED-ACR delivered"), "{}", flushed.stdout);
    assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT), "the amount is back");
    let shown = server.txn_show(MERCHANT, "RELAYED-ACR");
    assert!(has_token(&shown.to_lowercase(), "reversed"), "{shown}");
    assert!(
        relay.log().lines().any(|l| l.contains("SND to 'aaa.issuer.test'") && l.contains("3/271")),
        "the ACR did not go through the relay:\n{}",
        relay.log_tail()
    );
}

#[test]
fn the_relay_connection_survives_idle_watchdogs() {
    if !relay_available("the_relay_connection_survives_idle_watchdogs") {
        return;
    }
    // Tw = 6 s on every side: the relay's TwTimer, the server's
    // watchdog_secs and the terminal's --watchdog.
    let server = server_behind_relay(6);
    let _capture = server.capture();
    let direct = server.diameter.expect("Diameter is served");
    let relay = Relay::start(direct, 6);
    let context = || format!("{}\n--- server stderr ---\n{}", relay.log_tail(), last_lines(&server.stderr(), 40));
    let card = server.card(Method::Aka);
    let reversals = server.scratch("reversals.json");

    let first = pay(&[relay.addr], &card.json, "1.00", &reversals, &[]);
    assert_eq!(first.status.code(), Some(0), "{}\n{}", first.all(), context());
    let before_idle = relay.log().lines().count();
    // freeDiameter's one-line dumps: what it sends is named, what it receives
    // shows as code 0/280 with its flags (R--- a request, ---- an answer).
    let watchdog_exchanged = |log: &str| {
        let idle: Vec<&str> = log.lines().skip(before_idle).collect();
        let seen = |dir: &str, what: &str| {
            idle.iter()
                .any(|l| l.contains(&format!("{dir} 'aaa.issuer.test'")) && l.contains("0/280") && l.contains(what))
        };
        let relay_asked = seen("SND to", "'Device-Watchdog-Request'") && seen("RCV from", "f:----");
        let server_asked = seen("RCV from", "f:R---") && seen("SND to", "'Device-Watchdog-Answer'");
        relay_asked || server_asked
    };
    // Longer than Tw + 2 s of jitter: at least one DWR/DWA between the relay
    // and the server (freeDiameter's or the server's watchdog, whichever
    // fires first) while nothing else is said.
    let idle_start = Instant::now();
    std::thread::sleep(Duration::from_millis(9_000));
    while !watchdog_exchanged(&relay.log()) && idle_start.elapsed() < Duration::from_secs(14) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = relay.log();
    assert!(
        watchdog_exchanged(&log),
        "no DWR/DWA between the relay and the server while idle:\n{}\n{}",
        log.lines().skip(before_idle).collect::<Vec<_>>().join("\n"),
        context()
    );
    let second = pay(&[relay.addr], &card.json, "1.00", &reversals, &["--transaction-id", "AFTER-IDLE"]);
    assert_eq!(second.status.code(), Some(0), "after the idle period:\n{}\n{}", second.all(), context());
    server.assert_running();

    let log = relay.log();
    let opened = log.lines().filter(|l| l.contains("-> 'STATE_OPEN'") && l.contains("'aaa.issuer.test'")).count();
    assert_eq!(opened, 1, "the relay reconnected to the server:\n{}", relay.log_tail());
    let stderr = server.stderr();
    let peer_opens = stderr
        .lines()
        .filter(|l| l.contains("Diameter peer open") && l.contains(&format!("origin_host={RELAY}")))
        .count();
    assert_eq!(peer_opens, 1, "the server saw the relay connect again:\n{}", last_lines(&stderr, 40));
    assert!(!stderr.contains("Diameter connection closed"), "a connection closed:\n{}", last_lines(&stderr, 40));
    assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT - 200));
}

#[test]
fn a_stopped_relay_fails_over_or_leaves_a_reversal() {
    if !relay_available("a_stopped_relay_fails_over_or_leaves_a_reversal") {
        return;
    }
    let server = server_behind_relay(30);
    let _capture = server.capture();
    let direct = server.diameter.expect("Diameter is served");
    let relay = Relay::start(direct, 30);
    let context = || format!("{}\n--- server stderr ---\n{}", relay.log_tail(), last_lines(&server.stderr(), 40));
    let card = server.card(Method::Aka);
    let reversals = server.scratch("reversals.json");
    let d = direct.to_string();
    let r = reversals.display().to_string();

    // 1. A request lost with the relay: the server is frozen, so the relayed
    //    DER stays unanswered; the relay is stopped (DPR to the terminal).
    let (lost_tx, lost_rx) = mpsc::channel();
    {
        let frozen = Frozen::freeze(server.pid());
        let args = diameter_pay_args(
            &[relay.addr],
            &card.json,
            "7.00",
            &reversals,
            &["--watchdog", "6s", "--timeout", "5s", "--retries", "0"],
        );
        let payer = std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = lost_tx.send(terminal(&args));
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let forwarded = loop {
            let log = relay.log();
            if log.lines().any(|l| l.contains("SND to 'aaa.issuer.test'") && l.contains("5/268")) {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(forwarded, "the relay did not forward the first DER:\n{}", relay.log_tail());
        let run_dir = relay.run_dir.clone();
        let stopper = std::thread::spawn(move || stop_relay(&run_dir));
        let lost = lost_rx.recv_timeout(TOOL_TIMEOUT).expect("the terminal finished");
        payer.join().expect("payer thread");
        drop(frozen);
        let stopped = stopper.join().expect("stopper thread");
        assert!(stopped.success(), "--stop:\n{}", stopped.tail(20));

        assert_eq!(lost.status.code(), Some(2), "{}\n{}", lost.all(), context());
        let errors = error_lines(&lost);
        assert_eq!(errors.len(), 1, "one error line:\n{}", lost.stderr);
        assert!(errors[0].contains("reversal of "), "{}", errors[0]);
        assert!(errors[0].contains(&r), "names the store: {}", errors[0]);
    }
    let store = std::fs::read_to_string(&reversals).expect("a reversal was stored");
    let store: serde_json::Value = serde_json::from_str(&store).expect("the reversal store is JSON");
    let owed: Vec<String> = store["reversals"]
        .as_array()
        .expect("reversals")
        .iter()
        .map(|v| v["transaction_id"].as_str().expect("transaction_id").to_owned())
        .collect();
    assert_eq!(owed.len(), 1, "{store}");

    // 2. `flush` directly to the server delivers what the relay lost (the
    //    server had never decided it: it saw the first round only).
    let flushed = terminal(&[
        "flush",
        "--protocol",
        "diameter",
        "--server",
        &d,
        "--origin-host",
        TERMINAL,
        "--destination-realm",
        REALM,
        "--reversals",
        &r,
    ]);
    assert_eq!(flushed.status.code(), Some(0), "{}\n{}", flushed.all(), context());
    let delivered = format!("reversal of {} delivered", owed[0]);
    assert!(flushed.stdout.contains(&delivered), "no `{delivered}`:\n{}", flushed.all());
    let left = std::fs::read_to_string(&reversals).unwrap_or_default();
    assert!(!left.contains(owed[0].as_str()), "still owed after flush:\n{left}");
    assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT), "nothing charged");

    // 3. Only the stopped relay: one clear line, exit 2; nothing left the
    //    terminal (no connection opened), so nothing is owed.
    let unreachable = pay(&[relay.addr], &card.json, "1.25", &reversals, &["--timeout", "1s"]);
    assert_eq!(unreachable.status.code(), Some(2), "{}", unreachable.all());
    let errors = error_lines(&unreachable);
    assert_eq!(errors.len(), 1, "one error line:\n{}", unreachable.stderr);
    assert!(errors[0].contains(&relay.addr.to_string()), "names the relay: {}", errors[0]);
    assert!(!errors[0].contains("reversal of"), "nothing left, nothing owed: {}", errors[0]);
    assert_eq!(std::fs::read_to_string(&reversals).unwrap_or_default(), left, "the store is unchanged");
    server.assert_running();

    // 4. Two paths, the stopped relay first: the terminal fails over to the
    //    server's own port (its Origin-Host is a configured peer).
    let failover = pay(&[relay.addr, direct], &card.json, "1.50", &reversals, &["--timeout", "1s"]);
    assert_eq!(failover.status.code(), Some(0), "{}\n{}", failover.all(), context());
    assert!(failover.stdout.starts_with("APPROVED 1.50 USD  approval code "), "{}", failover.stdout);
    assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT - 150));
}

// ---------------------------------------------------------------------------
// Diameter/TLS between the relay and the server (RFC 6733 §13)
// ---------------------------------------------------------------------------

/// The name of the relay's `[[diameter.peers]]` entry on the TLS port: what
/// the ledger records as the terminal of a payment relayed over TLS.
const TLS_RELAY_PEER: &str = "relay-tls";

/// `terminal issue --name relay.issuer.test` into the data directory beside
/// `config`, as `STEM.pem` and `STEM-key.pem`: the certificate names the
/// relay's Diameter identity (a dNSName), which freeDiameter checks of its
/// own certificate before it starts. Returns the files and the key's
/// `key_sha256`.
fn issue_relay_credential(config: &Path, stem: &str) -> (RelayTls, String) {
    let dir = config.parent().expect("the configuration is in the data directory");
    let (cert, key) = (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}-key.pem")));
    let (issued, _) = eapay_tests::radsec::issue_terminal_with(config, RELAY, cert, key, &[]);
    (RelayTls { cert: issued.cert, key: issued.key, ca: dir.join("ca.pem") }, issued.key_sha256)
}

/// A server with `[diameter.tls]` (TLS 1.3 only, the default) that knows
/// the relay as the peer `relay-tls` (M-DEMO) from 127.0.0.1 by the key of
/// one relay certificate; returns it with that certificate and a second
/// one, for the same name from the same CA, whose key is registered nowhere.
fn server_behind_tls_relay() -> (Server, RelayTls, RelayTls) {
    let mut credentials = None;
    let server = Server::start_prepared(REALM, "eapay-test-secret", |config| {
        let (registered, key) = issue_relay_credential(config, "relay-registered");
        let (unregistered, _) = issue_relay_credential(config, "relay-unregistered");
        eapay_tests::edit_toml(config, |config| {
            let diameter = section(config, "diameter");
            let mut tls = toml::Table::new();
            tls.insert("listen".into(), "127.0.0.1:0".into());
            diameter.insert("tls".into(), toml::Value::Table(tls));
            let peers = diameter
                .entry("peers")
                .or_insert_with(|| toml::Value::Array(Vec::new()))
                .as_array_mut()
                .expect("[[diameter.peers]] is an array");
            let mut relay = toml::Table::new();
            relay.insert("name".into(), TLS_RELAY_PEER.into());
            relay.insert("origin_host".into(), RELAY.into());
            relay.insert("address".into(), "127.0.0.1/32".into());
            relay.insert("merchants".into(), toml::Value::Array(vec![MERCHANT.into()]));
            relay.insert("key_sha256".into(), key.into());
            peers.push(toml::Value::Table(relay));
        });
        credentials = Some((registered, unregistered));
    });
    let (registered, unregistered) = credentials.expect("prepared");
    (server, registered, unregistered)
}

/// A capture of the relay <-> server hop on the server's TLS port, if this
/// machine lets us capture (required in CI as root); in `work` (0755, so
/// tshark as `nobody` reads it).
fn capture_tls_hop(test: &str, port: u16, work: &Path) -> Option<(Dumpcap, PathBuf)> {
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let pcap = work.join("tls-hop.pcapng");
    match Dumpcap::start(&format!("tcp port {port}"), &pcap) {
        Ok(dumpcap) => Some((dumpcap, pcap)),
        Err(e) if interop_required() && eapay_tests::capture::is_root() => panic!("{e}"),
        Err(e) => {
            eprintln!("note: {test} cannot capture the TLS hop, so it does not look at it: {e}");
            None
        }
    }
}

#[test]
fn pays_through_the_relay_over_diameter_tls() {
    let test = "pays_through_the_relay_over_diameter_tls";
    if !relay_available(test) {
        return;
    }
    let (server, registered, _) = server_behind_tls_relay();
    let _capture = server.capture();
    let tls_port = server.diameter_tls.expect("the server announces `listening diameter tls`");
    let work = tempfile::Builder::new().prefix("eapay-tls-hop-").tempdir().expect("temp dir");
    let mut hop = capture_tls_hop(test, tls_port.port(), work.path());

    let relay = Relay::try_start(tls_port, 30, Some(&registered), &[])
        .unwrap_or_else(|f| panic!("the relay did not come up over TLS:\n{}\n{}", f.out.tail(40), server.stderr()));
    let context = || format!("{}\n--- server stderr ---\n{}", relay.log_tail(), last_lines(&server.stderr(), 40));
    // freeDiameter names the protocol of the connection it opened.
    assert!(
        relay.log().lines().any(|l| l.contains(&format!("CONNECTED TO '{SERVER_HOST}' (TCP,TLS,"))),
        "freeDiameter did not connect over TLS:\n{}",
        context()
    );
    // The server sends no TLS 1.3 session tickets (nothing resumes: the
    // client certificate is checked on every connection); GnuTLS 3.7 logged
    // each one it got as "TLS ERROR: ... gnutls_record_recv ... Resource
    // temporarily unavailable".
    assert!(!relay.log().contains("gnutls_record_recv"), "session tickets, or a TLS error:\n{}", context());

    let issuer_pub = server.data_dir.join("issuer.pub").display().to_string();
    let card = server.card_with(Method::Aka, &["--confirmation", "required"]);
    let reversals = server.scratch("reversals-tls.json");
    let extra = ["--issuer-key", issuer_pub.as_str(), "--transaction-id", "OVER-TLS-1"];
    let out = pay(&[relay.addr], &card.json, "2.50", &reversals, &extra);
    let (txn, _) = assert_approved(&out, "2.50", "through the relay over Diameter/TLS", &context);
    assert_eq!(txn, "OVER-TLS-1");
    assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT - 250));
    assert!(!reversals.exists(), "no reversal owed");

    // The DER went over the relay's TLS connection: the ledger names the
    // entry that registers the relay's key, not the terminal's own.
    let shown = server.txn_show(MERCHANT, &txn);
    assert!(
        shown.lines().any(|l| l.split_whitespace().take(2).eq(["terminal", TLS_RELAY_PEER])),
        "the ledger does not name {TLS_RELAY_PEER}:\n{shown}"
    );
    assert!(
        relay.log().lines().any(|l| l.contains(&format!("SND to '{SERVER_HOST}'")) && l.contains("5/268")),
        "the relay forwarded no DER:\n{}",
        relay.log_tail()
    );
    let stderr = server.stderr();
    assert!(
        stderr.lines().any(|l| l.contains("Diameter peer open") && l.contains(&format!("origin_host={RELAY}"))),
        "{}",
        context()
    );
    assert_eq!(server.scrape().count("eapay_diameter_tls_refused_total"), 0, "{}", context());

    // On the wire: the ClientHello's SNI (the server's Origin-Host, the
    // ConnectPeer name) is the only cleartext; no Diameter, not even the
    // relay's name (TLS 1.3 encrypts the certificates). tshark, where it
    // runs, names the version.
    if let Some((dumpcap, pcap)) = hop.as_mut() {
        std::thread::sleep(Duration::from_millis(200));
        assert!(dumpcap.has_captured(SERVER_HOST.as_bytes()), "the capture missed the ClientHello");
        for clear in ["OVER-TLS-1", RELAY, MERCHANT] {
            assert!(!dumpcap.has_captured(clear.as_bytes()), "`{clear}` in clear on the TLS port");
        }
        dumpcap.stop();
        if find_in_path("tshark").is_some() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&*pcap, std::fs::Permissions::from_mode(0o644)).expect("chmod the capture");
            let file = pcap.display().to_string();
            let decode = format!("tcp.port=={},tls", tls_port.port());
            let mut cmd = eapay_tests::capture::tshark_command();
            cmd.args(["-r", &file, "-d", &decode, "-Y", "tls.handshake.type == 2", "-T", "fields"])
                .args(["-e", "tls.handshake.extensions.supported_version"]);
            let hello = run_with_timeout(cmd, None, TOOL_TIMEOUT);
            assert!(hello.success(), "tshark:\n{}", hello.tail(20));
            let versions: Vec<&str> = hello.stdout.split_whitespace().collect();
            assert!(
                !versions.is_empty() && versions.iter().all(|v| *v == "0x0304"),
                "every ServerHello on the hop, TLS 1.3:\n{}",
                hello.all()
            );
        }
    }
    server.assert_running();
}

#[test]
fn a_relay_whose_key_is_not_registered_is_refused_over_tls() {
    if !relay_available("a_relay_whose_key_is_not_registered_is_refused_over_tls") {
        return;
    }
    let (server, _, unregistered) = server_behind_tls_relay();
    let tls_port = server.diameter_tls.expect("the server announces `listening diameter tls`");
    // Every message as a tree: the CEA's Result-Code is in the log.
    let failure = match Relay::try_start(tls_port, 30, Some(&unregistered), &["--dump", "tree"]) {
        Ok(relay) => panic!("the relay came up with a key nobody registered:\n{}", relay.log_tail()),
        Err(failure) => failure,
    };
    let context = || {
        format!(
            "{}\n--- freediameter.log ---\n{}\n--- server stderr ---\n{}",
            failure.out.all(),
            last_lines(&failure.log, 40),
            last_lines(&server.stderr(), 40)
        )
    };
    assert_eq!(failure.out.status.code(), Some(1), "{}", context());
    let first = failure.out.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("freediameter-relay.sh: ")
            && first.contains("refused the relay's CER (CEA")
            && first.contains("key_sha256"),
        "one line that names the refusal and the key: {first}\n{}",
        context()
    );
    // The certificate is the issuer CA's, so TLS succeeds and the CER goes
    // out over it; the key is what the server refuses, in the CEA (3010
    // DIAMETER_UNKNOWN_PEER, E bit).
    assert!(failure.log.contains(&format!("CONNECT FAILED to {SERVER_HOST}: CEA")), "{}", context());
    assert!(!failure.log.contains("TLS Handshake failed"), "{}", context());
    assert!(failure.log.contains("3010"), "no Result-Code 3010 in freeDiameter's log:\n{}", context());

    let deadline = Instant::now() + Duration::from_secs(5);
    while server.scrape().count("eapay_diameter_tls_refused_total") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.scrape().count("eapay_diameter_tls_refused_total") >= 1, "not counted:\n{}", context());
    assert!(server.stderr().contains("Diameter/TLS peer refused"), "not logged:\n{}", context());
    server.assert_running();
}

// ---------------------------------------------------------------------------
// tshark
// ---------------------------------------------------------------------------

/// tshark with `data_dir` as its data directory (as `nobody` when we are root).
fn tshark_as_user(data_dir: &Path, home: &Path, args: &[&str]) -> ToolOutput {
    let mut cmd = eapay_tests::capture::tshark_command();
    cmd.args(args)
        .env("WIRESHARK_DATA_DIR", data_dir)
        .env("WIRESHARK_CONFIG_DIR", home.join("config"))
        .env("HOME", home);
    run_with_timeout(cmd, None, TOOL_TIMEOUT)
}

#[test]
fn tshark_names_the_eapay_avps_of_a_relayed_payment() {
    let test = "tshark_names_the_eapay_avps_of_a_relayed_payment";
    if !relay_available(test) {
        return;
    }
    if need("tshark", find_in_path("tshark"), "apt-get install tshark", test).is_none() {
        return;
    }
    let dumpcap = find_in_path("dumpcap").or_else(|| Some(PathBuf::from("/usr/bin/dumpcap")).filter(|p| p.is_file()));
    if need("dumpcap", dumpcap, "apt-get install tshark (wireshark-common)", test).is_none() {
        return;
    }

    let server = server_behind_relay(30);
    let _capture = server.capture();
    let direct = server.diameter.expect("Diameter is served");
    let relay = Relay::start(direct, 30);
    let context = || format!("{}\n--- server stderr ---\n{}", relay.log_tail(), last_lines(&server.stderr(), 40));

    // Readable by the unprivileged user that decodes.
    let work = tempfile::Builder::new().prefix("eapay-tshark-").tempdir().expect("temp dir");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let pcap = work.path().join("relayed.pcapng");
    let data_dir = work.path().join("wireshark");
    eapay_tests::capture::data_dir_with_eapay(&eapay_tests::capture::wireshark_data_dir(), &data_dir);

    let card = server.card_with(Method::Aka, &["--confirmation", "required"]);
    let reversals = server.scratch("reversals.json");
    let filter = format!("tcp port {} or tcp port {}", relay.addr.port(), direct.port());
    let mut capture = match Dumpcap::start(&filter, &pcap) {
        Ok(c) => c,
        Err(e) if interop_required() || eapay_tests::capture::is_root() => panic!("{e}"),
        Err(e) => {
            eprintln!("SKIP: {test} cannot capture on lo (not root?): {e}");
            return;
        }
    };
    let out = pay(&[relay.addr], &card.json, "4.20", &reversals, &["--transaction-id", "CAPTURED-1"]);
    std::thread::sleep(Duration::from_millis(300));
    capture.stop();
    let (txn, approval) = assert_approved_plain(&out, "4.20", &context);
    assert_eq!(txn, "CAPTURED-1");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pcap, std::fs::Permissions::from_mode(0o644)).expect("chmod the capture");
    }

    let decode_as = [
        "-d".to_owned(),
        format!("tcp.port=={},diameter", relay.addr.port()),
        "-d".to_owned(),
        format!("tcp.port=={},diameter", direct.port()),
    ];
    let file = pcap.display().to_string();
    let mut args: Vec<&str> = vec!["-r", &file];
    args.extend(decode_as.iter().map(String::as_str));
    let mut verbose = args.clone();
    verbose.push("-V");
    let decoded = tshark_as_user(&data_dir, work.path(), &verbose);
    assert!(decoded.success(), "tshark -V:\n{}", decoded.tail(30));
    // A dictionary that does not load is reported on stderr.
    assert!(decoded.stderr.trim().is_empty(), "tshark complained:\n{}", decoded.stderr);
    let text = &decoded.stdout;
    assert!(!text.contains("Malformed"), "malformed packets:\n{}", last_lines(text, 80));
    assert!(!text.contains("Unknown AVP") && !text.contains("vnd=32473"), "an eapay AVP without its name:\n{text}");
    for (name, value) in [
        ("Eapay-Transaction-Id", "CAPTURED-1"),
        ("Eapay-Merchant-Id", MERCHANT),
        ("Eapay-Amount", "420"),
        ("Eapay-Currency", "840"),
        ("Eapay-Approval-Code", approval.as_str()),
        ("Eapay-Approved-Amount", "420"),
        ("Eapay-Card-Confirmation", "Confirmed (1)"),
        ("Eapay-Auth-Method", "aka"),
    ] {
        let line = format!("{name}: {value}");
        assert!(text.lines().any(|l| l.trim() == line), "no `{line}` in the decode:\n{}", last_lines(text, 120));
    }
    assert!(text.contains("Eapay-Receipt: "), "no Eapay-Receipt");
    // Every eapay AVP has the V bit and not the M bit, on both hops.
    let eapay_avps: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with("AVP: Eapay-")).collect();
    assert!(!eapay_avps.is_empty());
    let flagged: Vec<&&str> = eapay_avps.iter().filter(|l| !l.contains(" f=V-- vnd=Eapay ")).collect();
    assert!(flagged.is_empty(), "eapay AVPs with other flags than V: {flagged:?}");
    // The relay appended Route-Record to the requests (terminal) and answers (server).
    assert!(text.contains(&format!("Route-Record: {TERMINAL}")), "no Route-Record of the terminal");
    // The relay's CEA to the terminal offered the relay application.
    assert!(
        text.contains("Auth-Application-Id: Relay (4294967295)"),
        "the relay did not advertise the relay application"
    );

    // Field by field: the approval on both hops (server -> relay, relay ->
    // terminal) in the final DEA, the transaction id in every DER and in
    // that DEA, nothing malformed.
    let mut fields = args.clone();
    fields.extend([
        "-Y",
        "diameter.cmd.code == 268",
        "-T",
        "fields",
        "-E",
        "separator=;",
        "-e",
        "tcp.srcport",
        "-e",
        "tcp.dstport",
        "-e",
        "diameter.flags.request",
        "-e",
        "diameter.Eapay-Transaction-Id",
        "-e",
        "diameter.Eapay-Approval-Code",
    ]);
    let table = tshark_as_user(&data_dir, work.path(), &fields);
    assert!(table.success() && table.stderr.trim().is_empty(), "tshark -T fields:\n{}", table.tail(30));
    let rows: Vec<Vec<&str>> = table.stdout.lines().map(|l| l.split(';').collect()).collect();
    assert!(rows.len() >= 8, "a DER and a DEA per round on both hops:\n{}", table.stdout);
    let (rp, sp) = (relay.addr.port().to_string(), direct.port().to_string());
    for hop in [&rp, &sp] {
        let on_hop: Vec<&Vec<&str>> = rows.iter().filter(|r| r[0] == hop.as_str() || r[1] == hop.as_str()).collect();
        assert!(on_hop.len() >= 4, "port {hop}:\n{}", table.stdout);
        let requests: Vec<&&Vec<&str>> = on_hop.iter().filter(|r| r[2] == "1").collect();
        assert!(requests.len() >= 2, "port {hop}: the DERs:\n{}", table.stdout);
        assert!(
            requests.iter().all(|r| r[3] == "CAPTURED-1"),
            "port {hop}: every DER names the transaction:\n{}",
            table.stdout
        );
        let approvals: Vec<&&Vec<&str>> = on_hop.iter().filter(|r| r[4] == approval).collect();
        assert_eq!(approvals.len(), 1, "port {hop}: one DEA with the approval code:\n{}", table.stdout);
        assert_eq!(
            (approvals[0][2], approvals[0][3]),
            ("0", "CAPTURED-1"),
            "port {hop}: the final DEA:\n{}",
            table.stdout
        );
    }
    let mut malformed = args.clone();
    malformed.extend(["-Y", "_ws.malformed || _ws.expert.severity >= warning"]);
    let bad = tshark_as_user(&data_dir, work.path(), &malformed);
    assert!(bad.success(), "{}", bad.tail(20));
    assert!(bad.stdout.trim().is_empty(), "malformed or warned-about packets:\n{}", bad.stdout);
}

/// [`assert_approved`] without the receipt check (no --issuer-key given).
fn assert_approved_plain(out: &ToolOutput, amount: &str, context: &dyn Fn() -> String) -> (String, String) {
    assert_eq!(out.status.code(), Some(0), "{}\n{}", out.all(), context());
    let first = out.stdout.lines().next().unwrap_or_default();
    let prefix = format!("APPROVED {amount} USD  approval code ");
    assert!(first.starts_with(&prefix), "{first}");
    let txn = word_after(&out.stdout, "transaction").expect("transaction id");
    (txn, first[prefix.len()..].trim().to_owned())
}
