//! RADIUS transport behaviour of eapay-server, judged by FreeRADIUS's
//! radclient (3.2.1 checks Message-Authenticator and Response Authenticator
//! of every reply) and by raw datagrams built with aaa-proto:
//! Status-Server (RFC 5997), Blast-RADIUS hardening (Access-Request without
//! Message-Authenticator dropped), per-client secrets and unknown clients
//! dropped silently (RFC 2865 §3), duplicate detection (RFC 5080 §2.2.2),
//! accounting (RFC 2866).
//!
//! Note: radclient 3.2.1 does NOT add a Message-Authenticator on its own
//! (checked: `User-Name, User-Password` goes out with only those two
//! attributes), so requests with one list `Message-Authenticator = 0x00`.
//!
//! radclient loads `dictionaries/radius/dictionary.eapay` unchanged (`-d`
//! with a one-line `dictionary` that includes it), so Eapay attributes are
//! sent and read by name: the FreeRADIUS side of DESIGN.md §3.
//!
//! EAP requests here carry the payment attributes: the server declines an
//! authentication-only request, and these tests are about the transport.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aaa_proto::dictionary::rfc;
use aaa_proto::payment::PaymentDetails;
use aaa_proto::radius::{encode_request, Code, Packet};
use eapay_tests::{
    details, eap_access_request_packet, eap_identity_response, eap_payment_request, exchange, expect_status_answer,
    hex_dump, radclient, recv_within, repo_root, require_tool, run_with_timeout, status_server, udp_socket,
    verify_reply, Method, Server, ToolOutput, MERCHANT, NO_REPLY_WAIT, REPLY_TIMEOUT, TOOL_TIMEOUT,
};

/// A radclient `-d` directory whose `dictionary` includes the eapay one.
fn eapay_dictionary_dir(server: &Server) -> PathBuf {
    let dir = server.scratch("raddb");
    std::fs::create_dir_all(&dir).unwrap();
    let eapay = repo_root().join("dictionaries/radius/dictionary.eapay");
    assert!(eapay.is_file(), "{} is missing", eapay.display());
    std::fs::write(dir.join("dictionary"), format!("$INCLUDE {}\n", eapay.display())).unwrap();
    dir
}

/// `radclient -d EAPAY_DICT -x -r RETRIES -t TIMEOUT ADDR COMMAND SECRET`
/// with `attributes` on stdin.
fn run_radclient(
    tool: &Path,
    addr: std::net::SocketAddr,
    command: &str,
    secret: &str,
    attributes: &str,
    retries: u32,
    timeout_secs: u32,
) -> ToolOutput {
    run_radclient_in(tool, None, addr, command, secret, attributes, retries, timeout_secs)
}

#[allow(clippy::too_many_arguments)]
fn run_radclient_in(
    tool: &Path,
    dictionary: Option<&Path>,
    addr: std::net::SocketAddr,
    command: &str,
    secret: &str,
    attributes: &str,
    retries: u32,
    timeout_secs: u32,
) -> ToolOutput {
    let mut cmd = Command::new(tool);
    if let Some(dir) = dictionary {
        cmd.arg("-d").arg(dir);
    }
    cmd.args(["-x", "-r", &retries.to_string(), "-t", &timeout_secs.to_string()])
        .arg(addr.to_string())
        .arg(command)
        .arg(secret);
    run_with_timeout(cmd, Some(&format!("{attributes}\n")), TOOL_TIMEOUT)
}

/// The payment attributes by their dictionary names, for radclient.
fn payment_by_name(p: &PaymentDetails) -> String {
    format!(
        "Eapay-Transaction-Id = \"{}\", Eapay-Merchant-Id = \"{}\", Eapay-Amount = {}, Eapay-Currency = {}, \
         Eapay-Installments = {}, Eapay-Terminal-Nonce = 0x{}, Eapay-Terminal-Time = {}",
        p.transaction_id,
        p.merchant_id,
        p.amount,
        p.currency,
        p.installments,
        hex_dump(&p.terminal_nonce),
        p.terminal_time_ms
    )
}

/// A request that must be answered: 3 tries of 3 s.
fn answered(tool: &Path, addr: std::net::SocketAddr, command: &str, secret: &str, attributes: &str) -> ToolOutput {
    run_radclient(tool, addr, command, secret, attributes, 3, 3)
}

/// A request that must not be answered: one try, waiting 2 s.
fn unanswered(tool: &Path, addr: std::net::SocketAddr, command: &str, secret: &str, attributes: &str) -> ToolOutput {
    run_radclient(tool, addr, command, secret, attributes, 1, 2)
}

fn assert_received(out: &ToolOutput, server: &Server, what: &str) {
    // For `auth`, radclient expects an Access-Accept and exits 1 on anything
    // else, printing "Expected Access-Accept got ..."; an Access-Challenge is
    // still a received, verified reply.
    let expected_mismatch_only = what == "Access-Challenge"
        && out.status.code() == Some(1)
        && out.stderr.lines().all(|l| l.contains("Expected Access-Accept got Access-Challenge"));
    assert!(
        (out.success() || expected_mismatch_only) && out.stdout.contains(&format!("Received {what}")),
        "radclient got no valid {what}\n{}\n--- server stderr ---\n{}",
        out.tail(40),
        server.stderr()
    );
    // radclient prints this (and discards the reply) on a bad signature.
    assert!(!out.all().contains("verification failed"), "{}", out.tail(40));
}

fn assert_no_reply(out: &ToolOutput, why: &str) {
    assert!(
        !out.success() && !out.stdout.contains("Received ") && out.all().contains("No reply from server"),
        "{why}: the server answered (or radclient failed otherwise)\n{}",
        out.tail(40)
    );
}

#[test]
fn status_server_is_answered_with_access_accept() {
    let Some(tool) = require_tool("radclient", radclient()) else { return };
    let server = Server::start_default();
    let _capture = server.capture();
    let out = answered(&tool, server.auth, "status", &server.secret, "Message-Authenticator = 0x00");
    assert_received(&out, &server, "Access-Accept");
    // Our own check of the same exchange: Message-Authenticator first.
    let p = expect_status_answer(&server);
    assert_eq!(p.code, Code::AccessAccept);
    assert_eq!(p.attributes.first().map(|a| a.kind), Some(rfc::MESSAGE_AUTHENTICATOR));
}

/// Blast-RADIUS hardening: an Access-Request without Message-Authenticator
/// is dropped (require_message_authenticator = true in the generated
/// config). The server stays up and answers a proper request afterwards.
#[test]
fn access_request_without_message_authenticator_is_dropped() {
    let Some(tool) = require_tool("radclient", radclient()) else { return };
    let server = Server::start_default();
    let _capture = server.capture();
    let card = server.card(Method::Aka);
    let attrs = format!("User-Name = \"{}\", User-Password = \"not-a-card-pin\"", card.identity);
    let out = unanswered(&tool, server.auth, "auth", &server.secret, &attrs);
    assert!(
        !out.stdout.contains("Message-Authenticator"),
        "radclient added a Message-Authenticator:\n{}",
        out.tail(20)
    );
    assert_no_reply(&out, "Access-Request without Message-Authenticator");
    expect_status_answer(&server);
}

/// The same with EAP: an EAP-Response/Identity for a real card, once without
/// Message-Authenticator (dropped; RFC 3579 §3.2 requires it with EAP) and
/// once with it (answered with an Access-Challenge), from the same socket.
#[test]
fn eap_access_request_without_message_authenticator_is_dropped() {
    let server = Server::start_default();
    let _capture = server.capture();
    let card = server.card(Method::Aka);
    let socket = udp_socket("127.0.0.1:0");
    let eap = eap_identity_response(0, &card.identity);

    let payment = details("no-ma", 1250);
    let mut bare = Packet::new_request(Code::AccessRequest, 7);
    bare.push(rfc::USER_NAME, card.identity.as_bytes()).unwrap();
    bare.push_eap_message(&eap);
    payment.push_to(&mut bare, aaa_proto::dictionary::eapay::VENDOR_ID).unwrap();
    let wire = bare.encode_unsigned().unwrap(); // Access-Request: random authenticator, nothing to sign
    assert!(!bare.has_message_authenticator());
    if let Some(reply) = exchange(&socket, server.auth, &wire, NO_REPLY_WAIT) {
        panic!("EAP Access-Request without Message-Authenticator was answered: {}", hex_dump(&reply));
    }

    let (req, wire) = eap_payment_request(8, &card.identity, &eap, None, &payment, &server.secret);
    let reply = exchange(&socket, server.auth, &wire, REPLY_TIMEOUT)
        .unwrap_or_else(|| panic!("signed EAP-Response/Identity not answered\n{}", server.stderr()));
    let p = verify_reply(&reply, Code::AccessRequest, &req.authenticator, &server.secret);
    assert_eq!(p.code, Code::AccessChallenge, "{p:?}");
}

/// A shared secret the client list does not have: every signature fails,
/// the request is dropped silently (RFC 2865 §3). The right secret works.
#[test]
fn wrong_secret_is_dropped() {
    let Some(tool) = require_tool("radclient", radclient()) else { return };
    let server = Server::start_default();
    let _capture = server.capture();
    let out = unanswered(&tool, server.auth, "status", "not-the-secret", "Message-Authenticator = 0x00");
    assert_no_reply(&out, "Status-Server with a wrong secret");

    let card = server.card(Method::Aka);
    let eap = hex_dump(&eap_identity_response(0, &card.identity));
    let attrs = format!(
        "User-Name = \"{}\", EAP-Message = 0x{eap}, Message-Authenticator = 0x00, {}",
        card.identity,
        payment_by_name(&details("secret", 1250))
    );
    let dict = eapay_dictionary_dir(&server);
    let out = run_radclient_in(&tool, Some(&dict), server.auth, "auth", "not-the-secret", &attrs, 1, 2);
    assert_no_reply(&out, "EAP Access-Request with a wrong secret");

    let out = run_radclient_in(&tool, Some(&dict), server.auth, "auth", &server.secret, &attrs, 3, 3);
    assert!(
        out.stdout.contains("Eapay-Amount = 1250"),
        "radclient did not send the payment by name:\n{}",
        out.tail(40)
    );
    assert_received(&out, &server, "Access-Challenge");
}

/// RFC 5080 §2.2.2: the same datagram (source port, identifier,
/// authenticator) sent again gets the cached reply, byte for byte, never a
/// second decision (a second EAP-AKA challenge would have a fresh RAND).
#[test]
fn retransmission_gets_identical_reply() {
    let server = Server::start_default();
    let _capture = server.capture();
    let card = server.card(Method::Aka);
    let socket = udp_socket("127.0.0.1:0");
    let payment = details("retx", 1250);
    let eap = eap_identity_response(0, &card.identity);
    let (req, wire) = eap_payment_request(42, &card.identity, &eap, None, &payment, &server.secret);

    let first = exchange(&socket, server.auth, &wire, REPLY_TIMEOUT)
        .unwrap_or_else(|| panic!("no reply to EAP-Response/Identity\n{}", server.stderr()));
    let p = verify_reply(&first, Code::AccessRequest, &req.authenticator, &server.secret);
    assert_eq!(p.code, Code::AccessChallenge, "{p:?}");
    assert!(p.get(rfc::STATE).is_some(), "Access-Challenge without State: {p:?}");

    let second = exchange(&socket, server.auth, &wire, REPLY_TIMEOUT)
        .unwrap_or_else(|| panic!("no reply to the retransmission\n{}", server.stderr()));
    assert_eq!(
        hex_dump(&first),
        hex_dump(&second),
        "a retransmission got a different reply (a second decision instead of the cached one)"
    );
    // No third reply is pending (the retransmission produced exactly one).
    assert!(recv_within(&socket, Duration::from_millis(500)).is_none(), "more replies than requests");
}

/// The generated client list holds only 127.0.0.1/32; a datagram from
/// 127.0.0.2, however well signed, is dropped silently.
#[test]
fn unknown_client_is_dropped() {
    let server = Server::start_default();
    let _capture = server.capture();
    let socket = match std::net::UdpSocket::bind("127.0.0.2:0") {
        Ok(s) => s,
        Err(e) => panic!("cannot bind 127.0.0.2 (loopback is 127.0.0.0/8 on Linux): {e}"),
    };
    let (_, wire) = status_server(1, &server.secret);
    if let Some(reply) = exchange(&socket, server.auth, &wire, NO_REPLY_WAIT) {
        panic!("Status-Server from unknown client 127.0.0.2 was answered: {}", hex_dump(&reply));
    }
    let card = server.card(Method::Aka);
    let eap = eap_identity_response(0, &card.identity);
    let (_, wire) = eap_payment_request(2, &card.identity, &eap, None, &details("stranger", 1250), &server.secret);
    if let Some(reply) = exchange(&socket, server.auth, &wire, NO_REPLY_WAIT) {
        panic!("Access-Request from unknown client 127.0.0.2 was answered: {}", hex_dump(&reply));
    }
    // The same Status-Server from the known address is answered.
    expect_status_answer(&server);
}

/// RFC 2866: Accounting-Request to the acct port -> Accounting-Response,
/// which radclient verifies (MD5 Response Authenticator, and the
/// Message-Authenticator when present).
#[test]
fn accounting_request_gets_accounting_response() {
    let Some(tool) = require_tool("radclient", radclient()) else { return };
    let server = Server::start_default();
    let _capture = server.capture();
    let attrs = "Acct-Status-Type = Start, Acct-Session-Id = \"eapay-s-1\", User-Name = \"terminal\", \
                 NAS-IP-Address = 127.0.0.1, Message-Authenticator = 0x00";
    let out = answered(&tool, server.acct, "acct", &server.secret, attrs);
    assert_received(&out, &server, "Accounting-Response");
}

/// Accounting-Requests are authenticated by their MD5 Request Authenticator
/// (RFC 2866 §3); the Blast-RADIUS rule is about Access-Requests, and NASes
/// commonly send accounting without Message-Authenticator.
#[test]
fn accounting_request_without_message_authenticator_is_answered() {
    let Some(tool) = require_tool("radclient", radclient()) else { return };
    let server = Server::start_default();
    let _capture = server.capture();
    let attrs = "Acct-Status-Type = Stop, Acct-Session-Id = \"eapay-s-2\", User-Name = \"terminal\"";
    let out = answered(&tool, server.acct, "acct", &server.secret, attrs);
    assert_received(&out, &server, "Accounting-Response");

    // And a wrong secret there is dropped too.
    let out = unanswered(&tool, server.acct, "acct", "not-the-secret", attrs);
    assert_no_reply(&out, "Accounting-Request with a wrong secret");
}

/// A raw Accounting-Request signed by aaa-proto gets a verified
/// Accounting-Response with the Message-Authenticator first.
#[test]
fn raw_accounting_response_is_signed() {
    let server = Server::start_default();
    let _capture = server.capture();
    let mut req = Packet::new(Code::AccountingRequest, 9, [0; 16]);
    req.add_message_authenticator();
    req.push_u32(rfc::ACCT_STATUS_TYPE, 1);
    req.push(rfc::ACCT_SESSION_ID, b"eapay-raw-1").unwrap();
    let wire = encode_request(&req, server.secret.as_bytes()).unwrap();
    let authenticator: [u8; 16] = wire[4..20].try_into().unwrap();
    let socket = udp_socket("127.0.0.1:0");
    let reply = exchange(&socket, server.acct, &wire, REPLY_TIMEOUT)
        .unwrap_or_else(|| panic!("no Accounting-Response\n{}", server.stderr()));
    let p = verify_reply(&reply, Code::AccountingRequest, &authenticator, &server.secret);
    assert_eq!((p.code, p.identifier), (Code::AccountingResponse, 9));
}

/// The EAP Access-Request helper itself round-trips (guards the harness).
#[test]
fn harness_builds_valid_eap_requests() {
    let p = eap_access_request_packet(1, "0x@r", &eap_identity_response(3, "0x@r"), Some(b"s"));
    assert_eq!(p.eap_message(), Some(vec![2, 3, 0, 9, 1, b'0', b'x', b'@', b'r']));
    assert_eq!(p.attributes[0].kind, rfc::MESSAGE_AUTHENTICATOR);
}

/// Settlement by name with FreeRADIUS's radclient and our dictionary: a
/// reversal of an unknown transaction (tombstone) is acknowledged without a
/// decline; a capture of it is refused, and radclient reads the refusal by
/// name (`Eapay-Decline-Code = Invalid-Transaction`); a settlement for a
/// merchant this client may not act for is `Not-Permitted`.
#[test]
fn settlement_by_name_with_the_eapay_dictionary() {
    let Some(tool) = require_tool("radclient", radclient()) else { return };
    let server = Server::start_default();
    let _capture = server.capture();
    let dict = eapay_dictionary_dir(&server);
    let txn = eapay_tests::transaction_id("radclient");
    let settle = |action: &str, merchant: &str| {
        let attrs = format!(
            "Acct-Status-Type = Stop, Acct-Session-Id = \"{txn}\", Eapay-Settlement-Action = {action}, \
             Eapay-Transaction-Id = \"{txn}\", Eapay-Merchant-Id = \"{merchant}\""
        );
        let out = run_radclient_in(&tool, Some(&dict), server.acct, "acct", &server.secret, &attrs, 3, 3);
        assert_received(&out, &server, "Accounting-Response");
        out
    };
    let out = settle("Reverse", MERCHANT);
    assert!(!out.stdout.contains("Eapay-Decline-Code"), "the tombstone reversal was refused:\n{}", out.tail(40));
    let out = settle("Capture", MERCHANT);
    assert!(
        out.stdout.contains("Eapay-Decline-Code = Invalid-Transaction"),
        "capture of a reversed-before-authorized transaction:\n{}",
        out.tail(40)
    );
    let out = settle("Reverse", "M-NOT-OURS");
    assert!(out.stdout.contains("Eapay-Decline-Code = Not-Permitted"), "another merchant:\n{}", out.tail(40));
}

/// radclient with the eapay dictionary reads a payment answer's attributes
/// by name (issue 14 §4). radclient cannot run an EAP method, so the answer
/// it can get to an Access-Request is the decline of a card the issuer does
/// not know: Access-Reject with `Eapay-Decline-Code = Invalid-Card` (14) and
/// the transaction it declines, every attribute named, none `Attr-26...`.
#[test]
fn radclient_reads_a_payment_answer_by_name() {
    let Some(tool) = require_tool("radclient", radclient()) else { return };
    let server = Server::start_default();
    let _capture = server.capture();
    let dict = eapay_dictionary_dir(&server);
    let identity = format!("0nosuchcard@{}", server.realm);
    let eap = hex_dump(&eap_identity_response(0, &identity));
    let payment = details("by-name", 1250);
    let attrs = format!(
        "User-Name = \"{identity}\", EAP-Message = 0x{eap}, Message-Authenticator = 0x00, {}",
        payment_by_name(&payment)
    );
    let out = run_radclient_in(&tool, Some(&dict), server.auth, "auth", &server.secret, &attrs, 3, 3);
    assert!(out.stdout.contains("Received Access-Reject"), "{}\n{}", out.tail(40), server.stderr());
    let reply = out.stdout.split("Received Access-Reject").nth(1).unwrap_or_default();
    assert!(reply.contains("Eapay-Decline-Code = Invalid-Card"), "{}", out.tail(40));
    assert!(reply.contains(&format!("Eapay-Transaction-Id = \"{}\"", payment.transaction_id)), "{}", out.tail(40));
    assert!(!reply.contains("Attr-26"), "an attribute radclient could not name:\n{}", out.tail(40));
}
