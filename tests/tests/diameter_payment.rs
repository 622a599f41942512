//! Payments over Diameter (RFC 4072 DER/DEA, RFC 6733 ACR/ACA) between the
//! real `eapay-terminal` and `eapay-server` processes: the same decisions,
//! ledger rows and receipts as over RADIUS, a retransmitted DER is never a
//! second charge, and an ACR reversal gives the amount back.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aaa_proto::diameter::message::{frame_len, Limits, Message};
use aaa_proto::dictionary::diameter::ResultCode;
use eapay_tests::radsec::diameter_tls_args;
use eapay_tests::terminal::{error_lines, pay_diameter, terminal, word_after, DIAMETER_TERMINAL};
use eapay_tests::{has_token, Method, Server, ToolOutput, DEFAULT_LIMIT, MERCHANT};

const TERMINAL: &str = DIAMETER_TERMINAL;

/// The same payment over RADIUS.
fn pay_radius(server: &Server, card: &Path, amount: &str, reversals: &Path) -> ToolOutput {
    let auth = server.auth.to_string();
    let acct = server.acct.to_string();
    let card = card.display().to_string();
    let reversals = reversals.display().to_string();
    terminal(&[
        "pay",
        "--server",
        &auth,
        "--acct-server",
        &acct,
        "--secret",
        &server.secret,
        "--merchant",
        MERCHANT,
        "--currency",
        "USD",
        "--amount",
        amount,
        "--card",
        &card,
        "--reversals",
        &reversals,
    ])
}

#[test]
fn aka_and_tls_cards_pay_over_diameter_as_over_radius() {
    let server = Server::start_default();
    let _capture = server.capture();
    let diameter = server.diameter.expect("Diameter is served");
    let issuer_pub = server.data_dir.join("issuer.pub").display().to_string();
    for method in [Method::Sim, Method::Aka, Method::AkaPrime, Method::Tls, Method::Ttls] {
        let extra: &[&str] = if method == Method::Ttls {
            &["--confirmation", "required", "--pin", "2580"]
        } else {
            &["--confirmation", "required"]
        };
        let card = server.card_with(method, extra);
        let reversals = server.scratch(&format!("reversals-{method:?}.json"));

        let over_radius = pay_radius(&server, &card.json, "2.00", &reversals);
        assert_eq!(
            over_radius.status.code(),
            Some(0),
            "{method:?} over RADIUS:\n{}\n{}",
            over_radius.all(),
            server.stderr()
        );
        let over_diameter = pay_diameter(&[diameter], &card.json, "3.00", &reversals, &["--issuer-key", &issuer_pub]);
        assert_eq!(
            over_diameter.status.code(),
            Some(0),
            "{method:?} over Diameter:\n{}\n{}",
            over_diameter.all(),
            server.stderr()
        );
        let first = over_diameter.stdout.lines().next().unwrap_or_default();
        assert!(first.starts_with("APPROVED 3.00 USD  approval code "), "{first}");
        assert!(over_diameter.stdout.contains("receipt verified with issuer key"), "{}", over_diameter.stdout);

        let radius_txn = word_after(&over_radius.stdout, "transaction").expect("transaction id");
        let diameter_txn = word_after(&over_diameter.stdout, "transaction").expect("transaction id");
        server.assert_confirmed_approval_like(&diameter_txn, &radius_txn, &format!("{method:?} over Diameter"));
        assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT - 500), "{method:?}");
    }
}

#[test]
fn declines_come_back_over_diameter_with_their_code() {
    let server = Server::start_default();
    let _capture = server.capture();
    let diameter = server.diameter.expect("Diameter is served");
    let card = server.card(Method::Aka);
    let reversals = server.scratch("reversals.json");
    let over_limit = pay_diameter(&[diameter], &card.json, "10000.00", &reversals, &[]);
    assert_eq!(over_limit.status.code(), Some(1), "{}", over_limit.all());
    assert!(over_limit.stdout.starts_with("DECLINED 61 Exceeds-Limit"), "{}", over_limit.stdout);
    server.block(&card);
    let blocked = pay_diameter(&[diameter], &card.json, "1.00", &reversals, &[]);
    assert_eq!(blocked.status.code(), Some(1), "{}", blocked.all());
    assert!(blocked.stdout.starts_with("DECLINED 62"), "{}", blocked.stdout);
}

#[test]
fn an_unknown_terminal_is_refused_with_one_line() {
    let server = Server::start_default();
    let _capture = server.capture();
    let diameter = server.diameter.expect("Diameter is served").to_string();
    let out = terminal(&[
        "pay",
        "--protocol",
        "diameter",
        "--server",
        &diameter,
        "--origin-host",
        "stranger.issuer.test",
        "--destination-realm",
        "issuer.test",
        "--merchant",
        MERCHANT,
        "--amount",
        "1",
        "--currency",
        "USD",
        "--card-link",
        "tcp://127.0.0.1:9",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", out.all());
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert!(errors[0].contains("3010"), "{}", errors[0]);
}

/// A TCP proxy in front of the Diameter port that swallows the first answer
/// with Result-Code 2001: the terminal never sees the approval and sends the
/// DER again with the T flag; the server must answer from its duplicate
/// cache, not decide a second time.
struct LoseFirstApproval {
    addr: SocketAddr,
    lost: Arc<AtomicUsize>,
}

impl LoseFirstApproval {
    fn start(server: SocketAddr) -> LoseFirstApproval {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lost = Arc::new(AtomicUsize::new(0));
        let lost_by_proxy = lost.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(upstream) = TcpStream::connect(server) else { return };
                let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                std::thread::spawn(move || copy(c2, u2));
                let lost = lost_by_proxy.clone();
                std::thread::spawn(move || forward_answers(upstream, client, &lost));
            }
        });
        LoseFirstApproval { addr, lost }
    }
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
}

fn forward_answers(mut from: TcpStream, mut to: TcpStream, lost: &AtomicUsize) {
    let limits = Limits::default();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Ok(Some(len)) = frame_len(&buf, &limits) {
            if buf.len() < len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..len).collect();
            let approval = Message::decode(&frame, &limits).is_ok_and(|m| {
                !m.is_request() && m.command == 268 && m.result_code() == Some(ResultCode::Success.value())
            });
            if approval && lost.fetch_add(1, Ordering::SeqCst) == 0 {
                continue;
            }
            if to.write_all(&frame).is_err() {
                return;
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

#[test]
fn a_retransmitted_der_is_not_charged_twice() {
    let server = Server::start_default();
    let _capture = server.capture();
    let diameter = server.diameter.expect("Diameter is served");
    let proxy = LoseFirstApproval::start(diameter);
    let card = server.card(Method::Aka);
    let reversals = server.scratch("reversals.json");
    let out = pay_diameter(&[proxy.addr], &card.json, "4.00", &reversals, &["--timeout", "500ms", "--retries", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", out.all(), server.stderr());
    assert!(proxy.lost.load(Ordering::SeqCst) >= 2, "the approval was lost once and then delivered");
    assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT - 400), "charged once");
    let counters = server.terminate();
    assert!(counters.contains("diameter_duplicates_resent=1"), "{counters}");
    assert!(counters.contains("accepts=1 "), "one decision: {counters}");
}

#[test]
fn an_acr_reversal_gives_the_amount_back() {
    let server = Server::start_default();
    let _capture = server.capture();
    let diameter = server.diameter.expect("Diameter is served");
    let card = server.card(Method::Aka);
    let reversals = server.scratch("reversals.json");
    let paid = pay_diameter(&[diameter], &card.json, "6.00", &reversals, &["--transaction-id", "ACR-1"]);
    assert_eq!(paid.status.code(), Some(0), "{}", paid.all());
    assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT - 600));
    // The terminal owes a reversal for ACR-1 (as after a lost answer), and
    // one for a payment the server never saw (a tombstone).
    let advice = |txn: &str| {
        serde_json::json!({"merchant_id": MERCHANT, "transaction_id": txn, "amount": 600, "currency": 840,
            "created_ms": 1, "attempts": 0, "next_attempt_ms": 0})
    };
    let store = serde_json::json!({"version": 1, "reversals": [advice("ACR-1"), advice("ACR-NEVER")]});
    std::fs::write(&reversals, store.to_string()).unwrap();
    let d = diameter.to_string();
    let r = reversals.display().to_string();
    let flushed = terminal(&[
        "flush",
        "--protocol",
        "diameter",
        "--server",
        &d,
        "--origin-host",
        TERMINAL,
        "--destination-realm",
        "issuer.test",
        "--reversals",
        &r,
    ]);
    assert_eq!(flushed.status.code(), Some(0), "{}\n{}", flushed.all(), server.stderr());
    assert!(flushed.stdout.contains("reversal of ACR-1 delivered"), "{}", flushed.stdout);
    assert!(flushed.stdout.contains("reversal of ACR-NEVER delivered"), "{}", flushed.stdout);
    assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT), "the amount is back");
    let shown = server.txn_show(MERCHANT, "ACR-1");
    assert!(has_token(&shown.to_lowercase(), "reversed"), "{shown}");
    // The late original of the tombstoned transaction is declined, never approved.
    let late = pay_diameter(&[diameter], &card.json, "6.00", &reversals, &["--transaction-id", "ACR-NEVER"]);
    assert_eq!(late.status.code(), Some(1), "{}", late.all());
}

/// A Diameter peer acts for the merchants of its `[[diameter.peers]]` entry,
/// as a RADIUS client for those of its `[[radius.clients]]`: no others.
#[test]
fn a_diameter_peer_acts_only_for_its_own_merchants() {
    let server = Server::start_with("issuer.test", "eapay-test-secret", |config| {
        let peers = eapay_tests::section(config, "diameter")
            .get_mut("peers")
            .and_then(|p| p.as_array_mut())
            .expect("init writes [[diameter.peers]]");
        let mut shop = toml::Table::new();
        shop.insert("name".into(), "shop-2".into());
        shop.insert("origin_host".into(), "shop-2.issuer.test".into());
        shop.insert("address".into(), "127.0.0.1/32".into());
        shop.insert("merchants".into(), toml::Value::Array(vec!["M-SHOP2".into()]));
        peers.push(toml::Value::Table(shop));
    });
    let _capture = server.capture();
    let diameter = server.diameter.expect("Diameter is served").to_string();
    let card = server.card(Method::Aka);
    let (card, reversals) = (card.json.display().to_string(), server.scratch("r.json").display().to_string());
    let pay = |merchant: &str| {
        terminal(&[
            "pay",
            "--protocol",
            "diameter",
            "--server",
            &diameter,
            "--origin-host",
            "shop-2.issuer.test",
            "--destination-realm",
            "issuer.test",
            "--merchant",
            merchant,
            "--amount",
            "1.00",
            "--currency",
            "USD",
            "--card",
            &card,
            "--reversals",
            &reversals,
        ])
    };
    let own = pay("M-SHOP2");
    assert_eq!(own.status.code(), Some(0), "{}\n{}", own.all(), server.stderr());
    let other = pay(MERCHANT);
    assert_eq!(other.status.code(), Some(1), "another terminal's merchant is declined:\n{}", other.all());
}

/// Diameter over TLS (RFC 6733 §13) from the real terminal: `pay` and
/// `flush --transport tls` with the certificate `terminal issue` wrote,
/// for a SIM/AKA card and a TLS card (EAP-TLS inside Diameter/TLS); the
/// same terminal over plain TCP is refused, in one line.
#[test]
fn a_terminal_pays_and_reverses_over_diameter_tls() {
    let (server, cred) = Server::start_with_diameter_tls_terminal();
    let _capture = server.capture();
    let over_tls = server.diameter_tls.expect("Diameter/TLS is served");
    let tls = diameter_tls_args(&server, &cred);
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let reversals = server.scratch("reversals.json");
    for (method, txn) in [(Method::Aka, "DTLS-AKA"), (Method::Tls, "DTLS-TLS")] {
        let card = server.card(method);
        let paid =
            pay_diameter(&[over_tls], &card.json, "4.00", &reversals, &[&tls[..], &["--transaction-id", txn]].concat());
        assert_eq!(paid.status.code(), Some(0), "{method:?}:\n{}\n{}", paid.all(), server.stderr());
        assert!(paid.stdout.starts_with("APPROVED 4.00 USD"), "{}", paid.stdout);
        assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT - 400), "{method:?}");
    }

    let advice = serde_json::json!({"merchant_id": MERCHANT, "transaction_id": "DTLS-AKA", "amount": 400,
        "currency": 840, "created_ms": 1, "attempts": 0, "next_attempt_ms": 0});
    std::fs::write(&reversals, serde_json::json!({"version": 1, "reversals": [advice]}).to_string()).unwrap();
    let (d, r) = (over_tls.to_string(), reversals.display().to_string());
    let mut flush = vec!["flush", "--protocol", "diameter", "--server", &d, "--origin-host", TERMINAL];
    flush.extend(["--destination-realm", "issuer.test", "--reversals", &r]);
    flush.extend(&tls);
    let flushed = terminal(&flush);
    assert_eq!(flushed.status.code(), Some(0), "{}\n{}", flushed.all(), server.stderr());
    assert!(flushed.stdout.contains("reversal of DTLS-AKA delivered"), "{}", flushed.stdout);
    assert!(has_token(&server.txn_show(MERCHANT, "DTLS-AKA").to_lowercase(), "reversed"));

    let plain = server.diameter.expect("plain Diameter is served too");
    let card = server.card(Method::Aka);
    let refused = pay_diameter(&[plain], &card.json, "1.00", &reversals, &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", refused.all());
    let errors = error_lines(&refused);
    assert_eq!(errors.len(), 1, "{}", refused.stderr);
    assert!(errors[0].contains("3010"), "{}", errors[0]);
}

/// A terminal the server does not take over Diameter/TLS, or a server the
/// terminal does not trust, ends `pay` with one line that says which.
#[test]
fn a_refused_diameter_tls_terminal_says_why_in_one_line() {
    let (server, cred) = Server::start_with_diameter_tls_terminal();
    let over_tls = server.diameter_tls.expect("Diameter/TLS is served");
    let card = server.card(Method::Aka);
    let reversals = server.scratch("reversals.json");
    let stranger = server.issue_terminal("stranger", &[]);
    let cases = [
        (stranger.clone(), None, "[[diameter.peers]]"),
        // The server's certificate does not chain to a terminal certificate.
        (cred.clone(), Some(stranger.cert.clone()), "does not verify against --ca"),
    ];
    for (who, ca, says) in cases {
        let mut args = diameter_tls_args(&server, &who);
        if let Some(ca) = ca {
            let at = args.iter().position(|a| a == "--ca").expect("--ca") + 1;
            args[at] = ca.display().to_string();
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = pay_diameter(&[over_tls], &card.json, "1.00", &reversals, &args);
        assert_eq!(out.status.code(), Some(2), "{}", out.all());
        let errors = error_lines(&out);
        assert_eq!(errors.len(), 1, "{}", out.stderr);
        assert!(errors[0].contains(says), "{says}: {}", errors[0]);
    }
    assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT), "nothing was charged");
    server.assert_running();
}
