//! RADIUS over TLS (RFC 6614, issue 17 part 1): a terminal known by its
//! certificate's key pays over a long-lived TLS connection, and every kind
//! of bad input closes the connection (or is refused) with a counter.
//! Then `eapay-terminal --transport tls` itself: payments, a decline, a
//! payment lost in doubt and its reversal flushed over TLS, certificates
//! and arguments it refuses in one line, and `bench` multiplexing many
//! conversations over two connections.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aaa_proto::dictionary::eapay::DeclineCode;
use aaa_proto::radius::Code;
use eapay_tests::radsec::{terminal_tls_args, RadsecConnection, TerminalCredential};
use eapay_tests::terminal::{error_lines, word_after, CardProcess};
use eapay_tests::{details, status_server, Method, Server, ToolOutput, MERCHANT};

fn connect(server: &Server, c: &TerminalCredential) -> RadsecConnection {
    RadsecConnection::connect(server.radsec.expect("radsec"), &c.cert, &c.key, &server.ca_pem())
        .unwrap_or_else(|e| panic!("RADIUS/TLS connection: {e}\n{}", server.stderr()))
}

/// Payments over one connection: approved, recorded under the terminal's
/// name; Status-Server answered on the same connection; a retransmission
/// gets the cached reply byte for byte; a merchant the terminal is not
/// linked to is declined 57.
#[test]
fn a_terminal_pays_over_radsec() {
    let (server, terminals) = Server::start_with_radsec_terminals(300, &[("shop-tls", &[MERCHANT])]);
    let mut conn = connect(&server, &terminals[0]);
    let card = server.card_with(Method::Aka, &[]);
    for i in 0..3 {
        let d = details(&format!("radsec-{i}"), 1_000 + i);
        let (reply, answer) = conn.pay(&card.file(), &d).expect("payment over RadSec");
        assert_eq!(reply.code, Code::AccessAccept, "{answer:?}");
        let code = answer.approval_code.clone().expect("approval code");
        let text = server.txn_show(MERCHANT, &d.transaction_id);
        assert!(text.contains(&code) && text.contains("shop-tls"), "the ledger names the terminal:\n{text}");
    }
    let (status, _) = status_server(conn.next_id(), eapay_tests::radsec::SECRET);
    let answer = conn.exchange(&status).expect("Status-Server over RadSec");
    assert_eq!(answer.code, Code::AccessAccept, "RFC 5997 on a port that serves authentication");

    // The same Access-Request twice: one decision, the same bytes back.
    let d = details("radsec-dup", 500);
    let mut p = eapay_tests::eap_access_request_packet(conn.next_id(), &card.identity, &[2, 0, 0, 5, 1], None);
    p.attributes.extend(eapay_tests::payment_attributes(&d));
    let wire = aaa_proto::radius::encode_request(&p, b"radsec").expect("encode");
    conn.send(&wire).expect("send");
    let first = conn.recv().expect("first reply");
    conn.send(&wire).expect("resend");
    let second = conn.recv().expect("second reply");
    assert_eq!(first, second, "a retransmission gets the cached reply");

    let other = aaa_proto::payment::PaymentDetails { merchant_id: "M-OTHER".into(), ..details("radsec-57", 100) };
    server.admin(&["merchant", "add", "M-OTHER", "--client", "demo-terminal"]);
    let (_, answer) = conn.pay(&card.file(), &other).expect("payment for another merchant");
    assert_eq!(answer.decline_code, Some(DeclineCode::NotPermitted.value()), "{answer:?}");

    let scrape = server.scrape();
    assert_eq!(scrape.count("eapay_radsec_connections_total"), 1, "one long-lived connection");
    assert_eq!(scrape.count("eapay_radius_duplicates_total{action=\"resent\"}"), 1);
}

/// Certificates the server must refuse: an expired terminal certificate
/// (the handshake fails), a card's certificate from the same CA (valid, but
/// no terminal's key), and no certificate at all.
#[test]
fn unknown_expired_and_missing_certificates_are_refused() {
    let (server, terminals) = Server::start_with_radsec_terminals(300, &[("shop-ok", &[MERCHANT])]);
    let addr = server.radsec.expect("radsec");
    let ca = server.ca_pem();

    let expired = server.issue_terminal("shop-old", &["--expires", "2020-01"]);
    if let Ok(mut conn) = RadsecConnection::connect(addr, &expired.cert, &expired.key, &ca) {
        let (status, _) = status_server(1, "radsec");
        assert!(conn.exchange(&status).is_err(), "an expired certificate was served");
    }

    // A TLS card's certificate and key, from the card file.
    let card = server.card_with(Method::Tls, &[]);
    let file = card.file();
    let tls = file.tls.as_ref().expect("a TLS card holds its certificate");
    let cert = server.scratch("card.pem");
    let key = server.scratch("card-key.pem");
    std::fs::write(&cert, &tls.certificate).unwrap();
    std::fs::write(&key, &tls.key).unwrap();
    match RadsecConnection::connect(addr, &cert, &key, &ca) {
        Err(_) => {}
        Ok(mut conn) => {
            let (status, _) = status_server(1, "radsec");
            assert!(conn.exchange(&status).is_err(), "a card's certificate was served");
        }
    }

    let mut plain = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
    plain.set_verify(openssl::ssl::SslVerifyMode::NONE);
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let no_cert = plain.build().configure().unwrap().verify_hostname(false).connect("aaa", tcp);
    if let Ok(mut s) = no_cert {
        let mut b = [0u8; 1];
        assert!(!matches!(std::io::Read::read(&mut s, &mut b), Ok(n) if n > 0), "served without a certificate");
    }

    // The registered terminal still gets in.
    let mut ok = connect(&server, &terminals[0]);
    let (status, _) = status_server(ok.next_id(), "radsec");
    assert_eq!(ok.exchange(&status).expect("Status-Server").code, Code::AccessAccept);
    let scrape = server.scrape();
    assert!(scrape.count("eapay_radsec_refused_total{reason=\"handshake\"}") >= 2, "{}", scrape.text);
    assert_eq!(scrape.count("eapay_radsec_refused_total{reason=\"certificate\"}"), 1, "{}", scrape.text);
    server.assert_running();
}

/// Broken streams: plain RADIUS on the TLS port, a RADIUS length the
/// framing cannot follow, a packet stalled halfway, a packet signed with
/// the UDP secret; and a connection idle past its timeout is closed while
/// one kept alive by Status-Server stays.
#[test]
fn broken_streams_close_the_connection() {
    let (server, terminals) = Server::start_with_radsec_terminals(2, &[("shop-tls", &[MERCHANT])]);
    let addr = server.radsec.expect("radsec");

    // Plain RADIUS where TLS is expected: the handshake fails.
    let (_, datagram) = status_server(1, &server.secret);
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(&mut tcp, &datagram).unwrap();
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut tcp, &mut buf).unwrap_or(0);
    assert!(n == 0 || buf[0] == 0x15, "plain RADIUS gets a TLS alert at most, not RADIUS: {:?}", &buf[..n]);

    // A length above 4096: the stream cannot be followed, so it is closed.
    let mut conn = connect(&server, &terminals[0]);
    conn.send(&[1, 1, 0x13, 0x88]).unwrap();
    assert!(conn.is_closed(), "length 5000 closes the connection");

    // A length below 20, likewise.
    let mut conn = connect(&server, &terminals[0]);
    conn.send(&[1, 1, 0, 19]).unwrap();
    assert!(conn.is_closed(), "length 19 closes the connection");

    // Signed with the UDP client's secret: dropped (no answer), connection kept.
    let mut conn = connect(&server, &terminals[0]);
    let (_, wrong) = status_server(conn.next_id(), &server.secret);
    conn.send(&wrong).unwrap();
    let (status, _) = status_server(conn.next_id(), "radsec");
    let answer = conn.exchange(&status).expect("the connection survives a packet it drops");
    assert_eq!(answer.code, Code::AccessAccept);

    // Half a packet, then nothing: closed after the packet deadline (10 s).
    let mut stalled = connect(&server, &terminals[0]);
    let started = Instant::now();
    stalled.send(&[12, 1, 0, 38, 0, 0]).unwrap();
    assert!(stalled.is_closed(), "a stalled packet closes the connection");
    assert!(started.elapsed() >= Duration::from_secs(9), "closed before the deadline: {:?}", started.elapsed());

    // Idle: closed after 2 s; Status-Server every second keeps one open.
    let mut idle = connect(&server, &terminals[0]);
    let mut alive = connect(&server, &terminals[0]);
    for _ in 0..4 {
        std::thread::sleep(Duration::from_secs(1));
        let (status, _) = status_server(alive.next_id(), "radsec");
        alive.exchange(&status).expect("a kept-alive connection stays open");
    }
    assert!(idle.is_closed(), "an idle connection is closed");
    let scrape = server.scrape();
    assert_eq!(scrape.count("eapay_radsec_cut_total{reason=\"framing\"}"), 2, "{}", scrape.text);
    assert_eq!(scrape.count("eapay_radsec_cut_total{reason=\"stalled\"}"), 1, "{}", scrape.text);
    assert!(scrape.count("eapay_radsec_cut_total{reason=\"idle\"}") >= 1, "{}", scrape.text);
    assert!(scrape.count("eapay_radius_dropped_total{reason=\"bad_authenticator\"}") >= 1);
    server.assert_running();
}

// ---------------------------------------------------------------------------
// eapay-terminal --transport tls
// ---------------------------------------------------------------------------

/// `pay --transport tls` with a simulated card: `extra` after the TLS
/// arguments of `terminal`.
fn pay_tls(server: &Server, terminal: &TerminalCredential, card: &Path, amount: &str, extra: &[&str]) -> ToolOutput {
    let mut args = vec!["pay".to_string()];
    args.extend(terminal_tls_args(server, terminal));
    args.extend(["--merchant", MERCHANT, "--currency", "USD", "--amount", amount].map(String::from));
    args.extend(["--card".to_string(), card.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    eapay_tests::terminal::terminal(&args)
}

fn exit_code(out: &ToolOutput) -> Option<i32> {
    out.status.code()
}

/// The terminal pays over RADIUS/TLS: approved (exit 0) and recorded under
/// the terminal's name, then declined (exit 1), one connection per `pay`;
/// `--sslkeylogfile` writes the TLS 1.3 secrets.
#[test]
fn the_terminal_pays_and_is_declined_over_radsec() {
    let (server, terminals) = Server::start_with_radsec_terminals(300, &[("shop-tls", &[MERCHANT])]);
    let card = server.card(Method::Aka);
    let reversals = server.scratch("reversals.json");
    let keylog = server.scratch("keylog.txt");
    let reversals_arg = reversals.to_str().expect("utf-8").to_owned();
    let keylog_arg = keylog.to_str().expect("utf-8").to_owned();

    let paid = pay_tls(
        &server,
        &terminals[0],
        &card.json,
        "12.50",
        &["--transaction-id", "TLS-PAY-1", "--reversals", &reversals_arg, "--sslkeylogfile", &keylog_arg],
    );
    assert_eq!(exit_code(&paid), Some(0), "{}\n{}", paid.all(), server.stderr());
    assert!(paid.stdout.contains("APPROVED 12.50 USD"), "{}", paid.stdout);
    let code = word_after(&paid.stdout, "code").expect("approval code");
    let text = server.txn_show(MERCHANT, "TLS-PAY-1");
    assert!(text.contains(&code) && text.contains("shop-tls"), "the ledger names the TLS terminal:\n{text}");
    let secrets = std::fs::read_to_string(&keylog).expect("key log written");
    for label in ["CLIENT_HANDSHAKE_TRAFFIC_SECRET ", "CLIENT_TRAFFIC_SECRET_0 ", "SERVER_TRAFFIC_SECRET_0 "] {
        assert!(secrets.lines().any(|l| l.starts_with(label)), "no {label} line in the key log:\n{secrets}");
    }

    // Over the card's credit limit: declined 61, exit 1.
    let declined = pay_tls(&server, &terminals[0], &card.json, "6000.00", &["--reversals", &reversals_arg]);
    assert_eq!(exit_code(&declined), Some(1), "{}", declined.all());
    assert!(declined.stdout.contains("DECLINED 61"), "{}", declined.stdout);
    assert!(!reversals.exists(), "answers owe no reversal");

    let scrape = server.scrape();
    assert_eq!(scrape.count("eapay_radsec_connections_total"), 2, "one connection per pay:\n{}", scrape.text);
    assert_eq!(scrape.count("eapay_radsec_refused_total{reason=\"certificate\"}"), 0);
    server.assert_running();
}

/// Holds a server stopped (SIGSTOP) until dropped: its sockets stay open
/// but nothing answers, not even a TLS handshake.
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Self {
        let status = Command::new("kill").args(["-STOP", &pid.to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -STOP {pid}");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.to_string()]).status();
    }
}

/// A payment whose server stops answering after the terminal connected:
/// the request waits its time (no retransmission over TLS), the silent
/// connection is given up, a new one cannot be made, so the payment is in
/// doubt: exit 2, reversal stored. Once the server runs again, `flush
/// --transport tls` delivers the reversal over RADIUS/TLS.
#[test]
fn a_payment_lost_over_radsec_is_reversed_by_flush_over_radsec() {
    let (server, terminals) = Server::start_with_radsec_terminals(300, &[("shop-tls", &[MERCHANT])]);
    let card = server.card(Method::Aka);
    let card_process = CardProcess::serve(&card.json);
    let reversals = server.scratch("reversals.json");
    let reversals_arg = reversals.to_str().expect("utf-8").to_owned();

    // A gate on the card link: the terminal reaches the card only after it
    // has connected to the server, and the test stops the server then.
    let gate = TcpListener::bind("127.0.0.1:0").expect("gate");
    let gate_link = format!("tcp://{}", gate.local_addr().expect("gate address"));
    let (arrived, terminal_arrived) = mpsc::channel();
    let (open, opened) = mpsc::channel::<()>();
    let card_addr = card_process.addr;
    std::thread::spawn(move || {
        let Ok((terminal, _)) = gate.accept() else { return };
        let _ = arrived.send(());
        if opened.recv().is_err() {
            return;
        }
        let Ok(card) = TcpStream::connect(card_addr) else { return };
        pump(terminal, card);
    });

    let out = std::thread::scope(|s| {
        let paying = s.spawn(|| {
            let mut args = vec!["pay".to_string()];
            args.extend(terminal_tls_args(&server, &terminals[0]));
            args.extend(["--merchant", MERCHANT, "--currency", "USD", "--amount", "7.00"].map(String::from));
            args.extend(["--card-link", &gate_link, "--reversals", &reversals_arg].map(String::from));
            args.extend(["--timeout", "300ms", "--retries", "1", "--transaction-id", "TLS-LOST-1"].map(String::from));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            eapay_tests::terminal::terminal(&args)
        });
        terminal_arrived.recv_timeout(Duration::from_secs(30)).expect("the terminal reaches the card link");
        let stopped = Stopped::new(server.pid());
        open.send(()).expect("gate");
        let out = paying.join().expect("pay thread");
        drop(stopped);
        out
    });
    assert_eq!(exit_code(&out), Some(2), "a payment without an answer is an error:\n{}", out.all());
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "one error line: {errors:?}");
    assert!(
        errors[0].contains("no valid answer") && errors[0].contains("reversal of TLS-LOST-1 stored"),
        "{}",
        errors[0]
    );
    assert!(std::fs::read_to_string(&reversals).expect("reversal store").contains("TLS-LOST-1"));

    let mut args = vec!["flush".to_string()];
    args.extend(terminal_tls_args(&server, &terminals[0]));
    args.extend(["--reversals".to_string(), reversals_arg.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let flushed = eapay_tests::terminal::terminal(&args);
    assert_eq!(exit_code(&flushed), Some(0), "{}\n{}", flushed.all(), server.stderr());
    assert!(flushed.stdout.contains("reversal of TLS-LOST-1 delivered"), "{}", flushed.stdout);
    assert!(!std::fs::read_to_string(&reversals).expect("store").contains("TLS-LOST-1"), "acknowledged");
    let text = server.txn_show(MERCHANT, "TLS-LOST-1");
    assert!(text.to_lowercase().contains("revers"), "the ledger shows the reversal:\n{text}");
    server.assert_running();
}

/// Copies bytes both ways until either side closes.
fn pump(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else { return };
    let forward = std::thread::spawn(move || copy_then_close(a, b2));
    copy_then_close(b, a2);
    let _ = forward.join();
}

fn copy_then_close(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// What `--transport tls` refuses, each in one line on stderr with exit 2
/// and nothing stored: a --ca that did not sign the server's certificate,
/// a terminal certificate the server does not know, an explicit --secret,
/// missing credentials, Diameter over TLS at the RadSec port.
#[test]
fn radsec_terminal_refusals_are_one_line() {
    let (server, terminals) = Server::start_with_radsec_terminals(300, &[("shop-tls", &[MERCHANT])]);
    let card = server.card(Method::Aka);
    let reversals = server.scratch("reversals.json");
    let reversals_arg = reversals.to_str().expect("utf-8").to_owned();
    let base = ["--reversals", reversals_arg.as_str()];

    let refused = |args: Vec<String>, evidence: &str| {
        let mut all = vec!["pay".to_string()];
        all.extend(args);
        all.extend(["--merchant", MERCHANT, "--currency", "USD", "--amount", "1.00"].map(String::from));
        all.extend(["--card".to_string(), card.json.display().to_string()]);
        all.extend(base.map(String::from));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = eapay_tests::terminal::terminal(&all);
        assert_eq!(exit_code(&out), Some(2), "{evidence}:\n{}", out.all());
        let errors = error_lines(&out);
        assert_eq!(errors.len(), 1, "{evidence}: one error line: {errors:?}");
        assert!(errors[0].contains(evidence), "want {evidence:?} in {}", errors[0]);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    };
    let with = |args: Vec<String>, replace: &str, by: &str| {
        let mut args = args;
        if let Some(i) = args.iter().position(|a| a == replace) {
            args[i + 1] = by.to_string();
        }
        args
    };
    let good = terminal_tls_args(&server, &terminals[0]);

    // The server's certificate does not chain to the terminal's own certificate.
    let cert = terminals[0].cert.to_str().expect("utf-8");
    refused(with(good.clone(), "--ca", cert), "does not verify against --ca");
    // A certificate from the issuer CA whose key is registered nowhere.
    let stranger = server.issue_terminal("shop-unknown", &[]);
    refused(terminal_tls_args(&server, &stranger), "[[radius.tls.clients]]");
    let mut secret = good.clone();
    secret.extend(["--secret".to_string(), "s3cret".to_string()]);
    refused(secret, "--secret is not used with --transport tls");
    let key_at = good.iter().position(|a| a == "--key").expect("--key");
    let no_key: Vec<String> =
        good.iter().enumerate().filter(|(i, _)| !(key_at..=key_at + 1).contains(i)).map(|(_, a)| a.clone()).collect();
    refused(no_key, "--transport tls needs --cert and --key");
    let mut diameter = good.clone();
    diameter.extend(
        ["--protocol", "diameter", "--origin-host", "t.issuer.test", "--destination-realm", "issuer.test"]
            .map(String::from),
    );
    refused(diameter, "no Diameter connection could be opened");
    let missing = with(good.clone(), "--key", "/nonexistent/key.pem");
    refused(missing, "--key /nonexistent/key.pem");
    assert!(!reversals.exists(), "nothing was sent, so no reversal is owed");

    let scrape = server.scrape();
    assert_eq!(scrape.count("eapay_radsec_refused_total{reason=\"certificate\"}"), 1, "{}", scrape.text);
    server.assert_running();
}

/// `bench --transport tls`: eight simulated terminals share two
/// connections (`--connections 2`); every payment is approved, nothing is
/// dropped, and the server saw exactly two connections.
#[test]
fn bench_pays_over_radsec_on_shared_connections() {
    let (server, terminals) =
        Server::start_with_radsec_terminals_and(300, &[("bench-tls", &[MERCHANT])], &[("velocity_max", 0)]);
    let cards = server.issue_cards(Method::Aka, 16, &["--limit", "100000000"]);
    let json = server.scratch("bench.json");
    let mut args = vec!["bench".to_string()];
    args.extend(terminal_tls_args(&server, &terminals[0]));
    args.extend(["--method", "aka", "--cards", "16", "--concurrency", "8", "--connections", "2"].map(String::from));
    args.extend(["--rate", "100", "--duration", "2s", "--merchant", MERCHANT].map(String::from));
    args.extend(["--card-dir".to_string(), cards.display().to_string()]);
    args.extend(["--json".to_string(), json.display().to_string()]);
    let mut cmd = Command::new(eapay_tests::workspace_bin("eapay-terminal"));
    cmd.args(&args);
    let out = eapay_tests::run_with_timeout(cmd, None, Duration::from_secs(120));
    assert!(out.success(), "{}\n{}", out.tail(40), server.stderr());
    assert!(out.stdout.contains("EAP-AKA over RADIUS/TLS, full payments of 0.01 USD to M-DEMO"), "{}", out.stdout);
    assert!(out.stdout.lines().any(|l| l.trim() == "errors       none"), "{}", out.stdout);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("JSON");
    assert_eq!((v["protocol"].as_str(), v["transport"].as_str()), (Some("radius"), Some("tls")), "{v}");
    let completed = v["completed"].as_f64().expect("completed");
    assert!(completed > 0.0 && v["outcomes"]["approved"].as_f64() == Some(completed), "{v}");
    assert_eq!(v["errors_total"].as_f64(), Some(0.0), "{v}");
    assert_eq!(v["radsec"]["connections_opened"].as_u64(), Some(2), "{v}");
    assert_eq!(v["radsec"]["replies_unmatched"].as_u64(), Some(0), "{v}");
    assert_eq!(server.scrape().count("eapay_radsec_connections_total"), 2, "two long-lived connections");
    server.assert_running();
}

/// `terminal issue --origin-host --address` also prints the terminal's
/// `[[diameter.peers]]` entry (with the same key); a Diameter identity or
/// address it cannot use is one line on stderr and a non-zero exit, and
/// one of the pair without the other is refused by the parser.
#[test]
fn terminal_issue_prints_a_diameter_peer_only_for_a_valid_identity() {
    let server = Server::start_default();
    let config = server.config.display().to_string();
    let (cert, key) = (server.scratch("d.pem"), server.scratch("d-key.pem"));
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let issue = |extra: &[&str]| {
        let mut args = vec!["terminal", "issue", "--name", "shop-9", "--merchant", MERCHANT, "--config", &config];
        args.extend(["--cert-file", &cert, "--key-file", &key]);
        args.extend_from_slice(extra);
        eapay_tests::try_server_command(&args)
    };
    let ok = issue(&["--origin-host", "shop-9.issuer.test", "--address", "10.1.0.0/16"]);
    assert!(ok.success(), "{}", ok.stderr);
    let entries: toml::Table = ok.stdout.split_once("\n\n").expect("entries after the header").1.parse().expect("TOML");
    let radius_key = &entries["radius"]["tls"]["clients"][0]["key_sha256"];
    let peer = &entries["diameter"]["peers"][0];
    assert_eq!(&peer["key_sha256"], radius_key, "{}", ok.stdout);
    assert_eq!(peer["origin_host"].as_str(), Some("shop-9.issuer.test"));
    assert_eq!(peer["address"].as_str(), Some("10.1.0.0/16"));
    assert_eq!(peer["merchants"].as_array().map(Vec::len), Some(1));

    for (extra, says) in [
        (&["--origin-host", "shop 9", "--address", "10.1.0.1"][..], "eapay-server: --origin-host \"shop 9\""),
        (&["--origin-host", "shop-9.issuer.test", "--address", "10.1.0.300"][..], "eapay-server: --address"),
    ] {
        let out = issue(extra);
        assert!(!out.success(), "{extra:?} was accepted:\n{}", out.stdout);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert!(lines.len() == 1 && lines[0].starts_with(says), "{extra:?}: {}", out.stderr);
    }
    let half = issue(&["--origin-host", "shop-9.issuer.test"]);
    assert!(!half.success() && half.stderr.contains("--address"), "{}", half.stderr);
}
