//! The Diameter front end of eapay-server against hand-built messages over a
//! real TCP connection: the capabilities exchange, the watchdog, disconnect,
//! and what it answers (or closes on) for bad input (RFC 6733 §5, §7).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use aaa_proto::diameter::message::{Limits, Message, OwnedAvp, FLAG_ERROR};
use aaa_proto::dictionary::diameter::{application, avp, command, ResultCode};
use eapay_tests::{section, Server};

const TERMINAL: &str = "demo-terminal.issuer.test";

/// A byte stream to the server: plain TCP or TLS.
trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

struct Connection {
    stream: Box<dyn Stream>,
    next_id: u32,
}

impl Connection {
    fn open(server: &Server) -> Connection {
        let addr: SocketAddr = server.diameter.expect("the server listens for Diameter");
        let stream = TcpStream::connect(addr).expect("connect to the Diameter port");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Connection { stream: Box::new(stream), next_id: 1 }
    }

    /// A connection whose capabilities exchange succeeded.
    fn open_as(server: &Server, origin_host: &str) -> Connection {
        let mut c = Connection::open(server);
        let cer = c.cer(origin_host);
        let cea = c.ask(cer).expect("a CEA");
        assert_eq!(cea.result_code(), Some(ResultCode::Success.value()), "{cea:?}");
        c
    }

    fn request(&mut self, command: u32, application: u32) -> Message {
        self.next_id += 1;
        let mut m = Message::request(command, application, self.next_id, 0x0eab_0000 + self.next_id);
        m.push(OwnedAvp::utf8(avp::ORIGIN_HOST, None, true, TERMINAL));
        m.push(OwnedAvp::utf8(avp::ORIGIN_REALM, None, true, "issuer.test"));
        m
    }

    fn cer(&mut self, origin_host: &str) -> Message {
        self.next_id += 1;
        let mut m = Message::request(command::CAPABILITIES_EXCHANGE, application::COMMON, self.next_id, self.next_id);
        m.flags &= !aaa_proto::diameter::message::FLAG_PROXIABLE;
        m.push(OwnedAvp::utf8(avp::ORIGIN_HOST, None, true, origin_host));
        m.push(OwnedAvp::utf8(avp::ORIGIN_REALM, None, true, "issuer.test"));
        m.push(OwnedAvp::address(avp::HOST_IP_ADDRESS, None, true, "127.0.0.1".parse().unwrap()));
        m.push(OwnedAvp::u32(avp::VENDOR_ID, None, true, 32473));
        m.push(OwnedAvp::utf8(avp::PRODUCT_NAME, None, false, "diameter_server test"));
        m.push(OwnedAvp::u32(avp::AUTH_APPLICATION_ID, None, true, application::EAP));
        m.push(OwnedAvp::u32(avp::ACCT_APPLICATION_ID, None, true, application::ACCOUNTING));
        m
    }

    /// A DER with everything RFC 4072 asks for, around `eap`.
    fn der(&mut self, session: &str, eap: &[u8]) -> Message {
        let mut m = self.request(command::DIAMETER_EAP, application::EAP);
        m.avps.insert(0, OwnedAvp::utf8(avp::SESSION_ID, None, true, session));
        m.push(OwnedAvp::utf8(avp::DESTINATION_REALM, None, true, "issuer.test"));
        m.push(OwnedAvp::u32(avp::AUTH_APPLICATION_ID, None, true, application::EAP));
        m.push(OwnedAvp::u32(avp::AUTH_REQUEST_TYPE, None, true, 3));
        m.push(OwnedAvp::octets(avp::EAP_PAYLOAD, None, true, eap));
        m
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    fn send(&mut self, message: &Message) {
        let bytes = message.encode().expect("encode");
        self.send_bytes(&bytes);
    }

    /// The next message, or `None` once the server has closed.
    fn recv(&mut self) -> Option<Message> {
        let mut header = [0u8; 20];
        if self.stream.read_exact(&mut header).is_err() {
            return None;
        }
        let len = usize::from(header[1]) << 16 | usize::from(header[2]) << 8 | usize::from(header[3]);
        let mut bytes = header.to_vec();
        bytes.resize(len, 0);
        self.stream.read_exact(&mut bytes[20..]).ok()?;
        Some(Message::decode(&bytes, &Limits::default()).expect("the server's message decodes"))
    }

    fn ask(&mut self, message: Message) -> Option<Message> {
        self.send(&message);
        self.recv()
    }

    fn assert_closed(&mut self) {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("the server kept the connection open: {other:?}"),
        }
    }
}

/// The code of the AVP inside Failed-AVP (only its structure is read: a
/// missing AVP is named by an empty one, RFC 6733 §7.5).
fn failed_avp_code(answer: &Message) -> Option<u32> {
    let failed = answer.find(avp::FAILED_AVP, None)?;
    aaa_proto::diameter::parse_avps(&failed.data).ok()?.first().map(|a| a.code)
}

#[test]
fn a_configured_peer_opens_the_connection_and_the_watchdog_and_disconnect_work() {
    let server = Server::start_default();
    let mut c = Connection::open(&server);
    let cer = c.cer(TERMINAL);
    let cea = c.ask(cer).expect("CEA");
    assert_eq!(cea.command, command::CAPABILITIES_EXCHANGE);
    assert_eq!(cea.result_code(), Some(ResultCode::Success.value()));
    assert_eq!(cea.origin_host(), Some("aaa.issuer.test"));
    let apps: Vec<u32> = cea.find_all(avp::AUTH_APPLICATION_ID, None).filter_map(|a| a.as_u32().ok()).collect();
    assert_eq!(apps, vec![application::EAP]);
    assert!(cea.find(avp::HOST_IP_ADDRESS, None).is_some() && cea.find(avp::PRODUCT_NAME, None).is_some());

    let dwr = c.request(command::DEVICE_WATCHDOG, application::COMMON);
    let dwa = c.ask(dwr).expect("DWA");
    assert_eq!((dwa.command, dwa.is_request()), (command::DEVICE_WATCHDOG, false));
    assert_eq!(dwa.result_code(), Some(ResultCode::Success.value()));

    let mut dpr = c.request(command::DISCONNECT_PEER, application::COMMON);
    dpr.push(OwnedAvp::u32(avp::DISCONNECT_CAUSE, None, true, 2));
    let dpa = c.ask(dpr).expect("DPA");
    assert_eq!((dpa.command, dpa.result_code()), (command::DISCONNECT_PEER, Some(ResultCode::Success.value())));
    c.assert_closed();
}

#[test]
fn an_unknown_peer_gets_3010_and_is_closed() {
    let server = Server::start_default();
    let mut c = Connection::open(&server);
    let cer = c.cer("stranger.issuer.test");
    let cea = c.ask(cer).expect("CEA");
    assert_eq!(cea.result_code(), Some(ResultCode::UnknownPeer.value()));
    assert!(cea.flags & FLAG_ERROR != 0, "3010 is a protocol error: the E bit");
    c.assert_closed();
    server.assert_running();
}

#[test]
fn a_request_before_the_capabilities_exchange_closes_the_connection() {
    let server = Server::start_default();
    let mut c = Connection::open(&server);
    let der = c.der("before;1;1", &[2, 1, 0, 5, 1]);
    c.send(&der);
    c.assert_closed();
}

#[test]
fn a_bad_header_closes_the_connection() {
    let server = Server::start_default();
    for (what, mutate) in [
        ("version 2", (|b: &mut Vec<u8>| b[0] = 2) as fn(&mut Vec<u8>)),
        ("a length below the header", |b| b[1..4].copy_from_slice(&[0, 0, 8])),
        ("a length over the configured maximum", |b| b[1..4].copy_from_slice(&[0x10, 0, 0])),
    ] {
        let mut c = Connection::open_as(&server, TERMINAL);
        let mut bytes = c.der("bad;1;1", &[2, 1, 0, 5, 1]).encode().unwrap();
        mutate(&mut bytes);
        c.send_bytes(&bytes);
        match c.recv() {
            None => {}
            Some(m) => panic!("{what}: answered {m:?} instead of closing"),
        }
    }
    server.assert_running();
}

#[test]
fn a_peer_that_sends_nothing_is_closed_after_the_cer_timeout() {
    let server = Server::start_with("issuer.test", "eapay-test-secret", |config| {
        section(config, "diameter").insert("cer_timeout_secs".into(), toml::Value::Integer(1));
    });
    let mut c = Connection::open(&server);
    c.assert_closed();
}

#[test]
fn broken_ders_get_the_rfc_error_answers_and_the_connection_survives() {
    let server = Server::start_default();
    let mut c = Connection::open_as(&server, TERMINAL);

    // No Auth-Application-Id: 5005 DIAMETER_MISSING_AVP naming it.
    let mut der = c.der("s;1;1", &[2, 1, 0, 5, 1]);
    der.avps.retain(|a| !a.is(avp::AUTH_APPLICATION_ID, None));
    let answer = c.ask(der).expect("an answer");
    assert_eq!(answer.result_code(), Some(ResultCode::MissingAvp.value()), "{answer:?}");
    assert_eq!(failed_avp_code(&answer), Some(avp::AUTH_APPLICATION_ID));
    assert_eq!(answer.session_id(), Some("s;1;1"), "Session-Id comes back");

    // Another realm: 3003, E bit (this server is no relay).
    let mut der = c.der("s;1;2", &[2, 1, 0, 5, 1]);
    for a in &mut der.avps {
        if a.is(avp::DESTINATION_REALM, None) {
            *a = OwnedAvp::utf8(avp::DESTINATION_REALM, None, true, "elsewhere.example");
        }
    }
    let answer = c.ask(der).expect("an answer");
    assert_eq!(answer.result_code(), Some(ResultCode::RealmNotServed.value()));
    assert!(answer.flags & FLAG_ERROR != 0);

    // Another host: 3002.
    let mut der = c.der("s;1;3", &[2, 1, 0, 5, 1]);
    der.push(OwnedAvp::utf8(avp::DESTINATION_HOST, None, true, "other.issuer.test"));
    let answer = c.ask(der).expect("an answer");
    assert_eq!(answer.result_code(), Some(ResultCode::UnableToDeliver.value()));

    // An AVP with the M bit that the server does not know: 5001 naming it.
    let mut der = c.der("s;1;4", &[2, 1, 0, 5, 1]);
    der.push(OwnedAvp::u32(99_999, Some(4242), true, 7));
    let answer = c.ask(der).expect("an answer");
    assert_eq!(answer.result_code(), Some(ResultCode::AvpUnsupported.value()));
    assert_eq!(failed_avp_code(&answer), Some(99_999));

    // A DER in the middle of a conversation nobody started: 5002.
    let aka_response = [2, 7, 0, 8, 23, 2, 0, 0];
    let der = c.der("never-started;1;1", &aka_response);
    let answer = c.ask(der).expect("an answer");
    assert_eq!(answer.result_code(), Some(ResultCode::UnknownSessionId.value()));

    // An EAP packet whose Length disagrees: 5004 with the EAP-Payload.
    let der = c.der("s;1;5", &[2, 1, 0, 9, 1]);
    let answer = c.ask(der).expect("an answer");
    assert_eq!(answer.result_code(), Some(ResultCode::InvalidAvpValue.value()));
    assert_eq!(failed_avp_code(&answer), Some(avp::EAP_PAYLOAD));

    // An unknown command: 3001; an EAP command in another application: 3007.
    let other = c.request(300, application::EAP);
    let answer = c.ask(other).expect("an answer");
    assert_eq!(answer.result_code(), Some(ResultCode::CommandUnsupported.value()));
    let wrong_app = c.request(command::DIAMETER_EAP, application::NASREQ);
    let answer = c.ask(wrong_app).expect("an answer");
    assert_eq!(answer.result_code(), Some(ResultCode::ApplicationUnsupported.value()));

    // An AVP whose length runs past the message: 5014, or a close; the
    // server must survive either way.
    let mut bytes = c.der("s;1;6", &[2, 1, 0, 5, 1]).encode().unwrap();
    // The last AVP is the EAP-Payload: 8 octets of header, 5 of data, 3 of padding.
    let last = bytes.len() - 16;
    assert_eq!(bytes[last..last + 4], avp::EAP_PAYLOAD.to_be_bytes());
    bytes[last + 5..last + 8].copy_from_slice(&[0, 0, 0xff]);
    c.send_bytes(&bytes);
    if let Some(answer) = c.recv() {
        assert_eq!(answer.result_code(), Some(5014), "{answer:?}");
    }
    server.assert_running();

    // A fresh connection still gets a conversation started.
    let mut c = Connection::open_as(&server, TERMINAL);
    let der = c.der("fresh;1;1", b"\x02\x01\x00\x18\x010unknown@issuer.test");
    let answer = c.ask(der).expect("an answer");
    assert!(answer.result_code().is_some(), "{answer:?}");
    let counters = server.terminate();
    assert!(counters.contains("diameter_protocol_errors="), "{counters}");
}

#[test]
fn a_retransmitted_der_gets_the_cached_answer() {
    let server = Server::start_default();
    let mut c = Connection::open_as(&server, TERMINAL);
    let identity = b"\x02\x01\x00\x18\x01anonymous@issuer.test";
    let der = c.der("retx;1;1", identity);
    let first = c.ask(der.clone()).expect("an answer");
    let mut again = der;
    again.flags |= aaa_proto::diameter::message::FLAG_RETRANSMIT;
    again.hop_by_hop ^= 0xffff;
    let second = c.ask(again.clone()).expect("an answer to the retransmission");
    assert_eq!(second.hop_by_hop, again.hop_by_hop, "answered on the new hop-by-hop id");
    assert_eq!(first.avps, second.avps, "the same answer, not a second round");
    let counters = server.terminate();
    assert!(counters.contains("diameter_duplicates_resent=1"), "{counters}");
}

/// Grouped AVPs that do not parse, or nest deeper than the cap, get the
/// Result-Code of RFC 6733 §7.1 (5014, 5006), and the connection goes on.
#[test]
fn broken_grouped_avps_are_answered_and_the_connection_survives() {
    let server = Server::start_default();
    let mut c = Connection::open_as(&server, TERMINAL);

    // A Proxy-Info (Grouped) whose data is not AVPs.
    let mut der = c.der("g;1;1", &[2, 1, 0, 5, 1]);
    der.push(OwnedAvp::octets(avp::PROXY_INFO, None, true, &[0, 0, 1, 0x1c, 0x40, 0, 0, 0xff, 1, 2]));
    let answer = c.ask(der).expect("an answer to a Grouped AVP that does not parse");
    assert_eq!(answer.result_code(), Some(5014), "{answer:?}");
    assert!(answer.find(avp::FAILED_AVP, None).is_some(), "{answer:?}");

    // Proxy-Info inside Proxy-Info, deeper than the decoder's cap of 4.
    let mut nested = OwnedAvp::octets(avp::PROXY_STATE, None, true, b"x");
    for _ in 0..6 {
        nested = OwnedAvp::grouped(avp::PROXY_INFO, None, true, &[nested]).unwrap();
    }
    let mut der = c.der("g;1;2", &[2, 1, 0, 5, 1]);
    der.push(nested);
    let answer = c.ask(der).expect("an answer to AVPs nested too deep");
    assert_eq!(answer.result_code(), Some(ResultCode::ResourcesExceeded.value()), "{answer:?}");

    // The same connection still works.
    let dwr = c.request(command::DEVICE_WATCHDOG, application::COMMON);
    let dwa = c.ask(dwr).expect("DWA");
    assert_eq!(dwa.result_code(), Some(ResultCode::Success.value()));
    server.assert_running();
}

/// A TCP connection to `to` from the local address `local` (any of
/// 127.0.0.0/8 on Linux), as a blocking std stream.
fn connect_from(local: &str, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("runtime");
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(local.parse().expect("local address")).expect("bind");
        let stream = socket.connect(to).await.expect("connect");
        let stream = stream.into_std().expect("std stream");
        stream.set_nonblocking(false).expect("blocking");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
        stream
    })
}

/// Only the address blocks of configured peers may connect: anyone else is
/// closed before a byte is read, and counted.
#[test]
fn a_connection_from_no_peers_address_is_closed_unread() {
    let server = Server::start_with("issuer.test", "eapay-test-secret", |config| {
        let diameter = section(config, "diameter");
        let peers = diameter.get_mut("peers").and_then(|p| p.as_array_mut()).expect("[[diameter.peers]]");
        peers[0].as_table_mut().expect("peer").insert("address".into(), "127.0.0.9".into());
    });
    let addr = server.diameter.expect("Diameter");
    let mut c = Connection { stream: Box::new(connect_from("127.0.0.1:0", addr)), next_id: 1 };
    c.assert_closed();
    let mut ok = Connection { stream: Box::new(connect_from("127.0.0.9:0", addr)), next_id: 1 };
    let cer = ok.cer(TERMINAL);
    let cea = ok.ask(cer).expect("CEA");
    assert_eq!(cea.result_code(), Some(ResultCode::Success.value()), "the peer's own address is served");
    let scrape = server.scrape();
    assert_eq!(scrape.count("eapay_diameter_connections_refused_total"), 1);
    assert_eq!(scrape.count("eapay_diameter_connections_total"), 1, "only the peer's connection was served");
}

/// A peer that opens connections and stalls in them (no CER) holds at most
/// 16 at once; the 17th from its address is closed unread, while a peer at
/// another address of the block still connects and is served.
#[test]
fn one_address_holds_at_most_its_share_of_connections() {
    let server = Server::start_with("issuer.test", "eapay-test-secret", |config| {
        let diameter = section(config, "diameter");
        let peers = diameter.get_mut("peers").and_then(|p| p.as_array_mut()).expect("[[diameter.peers]]");
        peers[0].as_table_mut().expect("peer").insert("address".into(), "127.0.0.0/8".into());
    });
    let addr = server.diameter.expect("Diameter");
    let stalled: Vec<TcpStream> = (0..16).map(|_| connect_from("127.0.0.5:0", addr)).collect();
    // Accepted in order: once the 16th is counted, the 17th is over the cap.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.scrape().count("eapay_diameter_connections_total") < 16 {
        assert!(std::time::Instant::now() < deadline, "the 16 connections were not accepted");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut over = Connection { stream: Box::new(connect_from("127.0.0.5:0", addr)), next_id: 1 };
    over.assert_closed();
    let mut other = Connection { stream: Box::new(connect_from("127.0.0.6:0", addr)), next_id: 1 };
    let cer = other.cer(TERMINAL);
    let cea = other.ask(cer).expect("CEA");
    assert_eq!(cea.result_code(), Some(ResultCode::Success.value()), "another address is served");
    assert_eq!(server.scrape().count("eapay_diameter_connections_refused_total"), 1);
    // Their place is given back once they are gone.
    drop(stalled);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.scrape().count("eapay_diameter_closed_total") < 16 {
        assert!(std::time::Instant::now() < deadline, "the stalled connections were not closed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut again = Connection { stream: Box::new(connect_from("127.0.0.5:0", addr)), next_id: 1 };
    let cer = again.cer(TERMINAL);
    let cea = again.ask(cer).expect("CEA");
    assert_eq!(cea.result_code(), Some(ResultCode::Success.value()), "the address may connect again");
}

/// A DER that continues a session this server does not have (a restart
/// lost it) and names a payment the ledger holds approved for this
/// terminal: 3004 with the E bit, which leaves the terminal in doubt so it
/// reverses, never a 5002 it would show as a decline (issue 16 §2,
/// tests/tests/faults_under_load.rs). A payment the ledger does not hold
/// approved still gets 5002.
#[test]
fn a_lost_session_whose_payment_is_approved_gets_3004_not_a_decline() {
    let server = Server::start_default();
    let card = server.card_with(eapay_tests::Method::Aka, &[]);
    let approved = eapay_tests::details("lost-session", 700);
    server.pay(&card, &approved).assert_approved(&server, &approved);
    let unknown = eapay_tests::details("never-approved", 700);

    let mut c = Connection::open_as(&server, TERMINAL);
    let aka_response = [2, 7, 0, 8, 23, 2, 0, 0];
    let der_for = |c: &mut Connection, session: &str, d: &aaa_proto::payment::PaymentDetails| {
        let mut der = c.der(session, &aka_response);
        for (code, value) in d.attributes() {
            der.push(OwnedAvp::octets(u32::from(code), Some(32473), false, &value));
        }
        der
    };
    let der = der_for(&mut c, "lost;1;1", &approved);
    let answer = c.ask(der).expect("an answer");
    assert_eq!(answer.result_code(), Some(ResultCode::TooBusy.value()), "{answer:?}");
    assert!(answer.flags & FLAG_ERROR != 0, "a protocol error: {answer:?}");
    assert!(answer.find(avp::EAP_PAYLOAD, None).is_none(), "{answer:?}");

    let der = der_for(&mut c, "lost;1;2", &unknown);
    let answer = c.ask(der).expect("an answer");
    assert_eq!(answer.result_code(), Some(ResultCode::UnknownSessionId.value()), "{answer:?}");
    server.assert_running();
}

/// A TLS connection to the Diameter/TLS port with `cert`/`key`.
fn open_tls(server: &Server, cert: &std::path::Path, key: &std::path::Path) -> Result<Connection, String> {
    let addr = server.diameter_tls.expect("the server announces its Diameter/TLS address");
    let mut b =
        openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).map_err(|e| e.to_string())?;
    b.set_certificate_chain_file(cert).map_err(|e| e.to_string())?;
    b.set_private_key_file(key, openssl::ssl::SslFiletype::PEM).map_err(|e| e.to_string())?;
    b.set_ca_file(server.ca_pem()).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let stream = b.build().configure().map_err(|e| e.to_string())?.verify_hostname(false).connect("aaa", tcp);
    Ok(Connection { stream: Box::new(stream.map_err(|e| e.to_string())?), next_id: 1 })
}

/// The registered peer opens over TLS (CEA 2001) and its DER is answered
/// there; over plain TCP the same peer is unknown (3010): a registered key
/// means TLS only.
#[test]
fn a_peer_with_a_registered_key_talks_over_tls_only() {
    let (server, cred) = Server::start_with_diameter_tls_terminal();
    let mut c = open_tls(&server, &cred.cert, &cred.key).expect("TLS handshake");
    let cer = c.cer(TERMINAL);
    let cea = c.ask(cer).expect("CEA over TLS");
    assert_eq!(cea.result_code(), Some(ResultCode::Success.value()), "{cea:?}");
    let identity = eapay_tests::eap_identity_response(0, "0unknown@issuer.test");
    let der = c.der("tls;1;1", &identity);
    let dea = c.ask(der).expect("DEA over TLS");
    assert!(dea.result_code().is_some(), "the DER is answered over TLS: {dea:?}");

    let mut plain = Connection::open(&server);
    let cer = plain.cer(TERMINAL);
    let cea = plain.ask(cer).expect("CEA");
    assert_eq!(cea.result_code(), Some(ResultCode::UnknownPeer.value()), "plain TCP for a TLS peer: {cea:?}");
}

/// Over TLS, a valid certificate whose key no peer registers (a card's,
/// from the same CA) gets 3010; an expired one, and plain Diameter on the
/// TLS port, fail the handshake; each is counted as a refused TLS peer.
#[test]
fn tls_peers_are_known_by_their_key() {
    let (server, _) = Server::start_with_diameter_tls_terminal();
    let other = server.issue_terminal("not-registered", &[]);
    let mut c = open_tls(&server, &other.cert, &other.key).expect("a valid certificate completes the handshake");
    let cer = c.cer(TERMINAL);
    match c.ask(cer) {
        Some(cea) => assert_eq!(cea.result_code(), Some(ResultCode::UnknownPeer.value()), "{cea:?}"),
        None => panic!("no CEA for an unregistered key"),
    }
    assert_eq!(server.scrape().count("eapay_diameter_tls_refused_total"), 1, "the unregistered key is counted");

    let expired = server.issue_terminal("expired", &["--expires", "2020-01"]);
    if let Ok(mut c) = open_tls(&server, &expired.cert, &expired.key) {
        // TLS 1.3: the client learns of the refusal only when it next reads.
        let cer = c.cer(TERMINAL).encode().expect("encode");
        let served = c.stream.write_all(&cer).is_ok() && c.recv().is_some();
        assert!(!served, "an expired certificate was served");
    }
    let addr = server.diameter_tls.expect("Diameter/TLS");
    let mut plain = Connection { stream: Box::new(TcpStream::connect(addr).unwrap()), next_id: 1 };
    let cer = plain.cer(TERMINAL).encode().expect("encode");
    let _ = plain.stream.write_all(&cer);
    plain.assert_closed();
    let refused = server.scrape().count("eapay_diameter_tls_refused_total");
    assert!(refused >= 3, "the unregistered key, expired and plain handshakes counted: {refused}");
    server.assert_running();
}
