//! RADIUS over TLS (RFC 6614, issue 17 part 1): a terminal known by its
//! certificate's key pays over a long-lived TLS connection, and every kind
//! of bad input closes the connection (or is refused) with a counter.

use std::time::{Duration, Instant};

use aaa_proto::dictionary::eapay::DeclineCode;
use aaa_proto::radius::Code;
use eapay_tests::radsec::{RadsecConnection, TerminalCredential};
use eapay_tests::{details, status_server, Method, Server, MERCHANT};

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
