//! Malformed input on the RADIUS auth port: the server must drop what it
//! cannot authenticate (RFC 2865 §3 "silently discarded"), never grant access
//! on malformed EAP (RFC 3748 §4: an EAP Length larger than the data is
//! silently discarded), and stay up and answering afterwards.
//!
//! Each case is sent from its own UDP socket so a reply can be attributed to
//! it. After all cases, a valid Status-Server must be answered; then every
//! case socket is checked for replies over one shared window.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use aaa_proto::dictionary::eapay;
use aaa_proto::dictionary::rfc;
use aaa_proto::radius::{encode_request, Attribute, Code, Packet};
use eapay_tests::{
    details, eap_access_request, eap_access_request_packet, eap_identity_response, eap_payment_request, eapay_vsa,
    exchange, expect_status_answer, hex_dump, payment_attributes, recv_within, status_server, udp_socket, verify_reply,
    Method, Server, NO_REPLY_WAIT, REPLY_TIMEOUT,
};

/// What a case may get back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Unauthenticated or unparseable: silently discarded.
    NoReply,
    /// Authenticated (valid Message-Authenticator) but malformed EAP: may be
    /// dropped or answered with a correctly signed Access-Reject.
    NoReplyOrReject,
    /// Malformed EAP inside a running conversation: anything signed except
    /// an Access-Accept (RFC 4187 allows an AKA-Notification challenge).
    NotAccept,
    /// EAP-Start: no reply, Access-Reject, or an Access-Challenge carrying
    /// EAP-Request/Identity.
    EapStart,
}

struct Case {
    name: String,
    datagram: Vec<u8>,
    expect: Expect,
    /// Request authenticator, to verify an allowed reply.
    authenticator: [u8; 16],
}

fn case(name: impl Into<String>, datagram: Vec<u8>, expect: Expect) -> Case {
    let authenticator = datagram.get(4..20).and_then(|a| a.try_into().ok()).unwrap_or([0; 16]);
    Case { name: name.into(), datagram, expect, authenticator }
}

fn set_length(buf: &mut [u8], len: usize) {
    buf[2..4].copy_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
}

/// Appends raw attribute bytes and fixes the Length field (the signature,
/// if any, is then wrong; that is the point for framing cases).
fn with_raw_tail(mut buf: Vec<u8>, tail: &[u8]) -> Vec<u8> {
    buf.extend_from_slice(tail);
    let len = buf.len();
    set_length(&mut buf, len);
    buf
}

/// A signed EAP Access-Request whose EAP-Message content is `eap` as given.
fn signed_eap(identity: &str, eap: &[u8], secret: &str) -> Vec<u8> {
    let mut p = eap_access_request_packet(3, identity, &[], None);
    p.attributes.push(Attribute { kind: rfc::EAP_MESSAGE, value: eap.to_vec() });
    encode_request(&p, secret.as_bytes()).expect("encode")
}

/// Framing and authentication faults: all must be dropped.
fn framing_cases(server: &Server, identity: &str) -> Vec<Case> {
    let secret = &server.secret;
    let (_, status) = status_server(17, secret);
    let (_, eap_req) = eap_access_request(18, identity, &eap_identity_response(0, identity), None, secret);
    let mut cases = Vec::new();

    for n in 0..20 {
        cases.push(case(format!("{n}-byte prefix of a Status-Server"), status[..n].to_vec(), Expect::NoReply));
    }
    for extra in [1usize, 100] {
        let mut b = status.clone();
        let len = b.len() + extra;
        set_length(&mut b, len);
        cases.push(case(format!("Length field {extra} larger than the datagram"), b, Expect::NoReply));
    }
    let mut b = status.clone();
    set_length(&mut b, 4096);
    cases.push(case("Length 4096 in a short datagram", b, Expect::NoReply));
    for len in [0usize, 4, 19] {
        let mut b = status.clone();
        set_length(&mut b, len);
        cases.push(case(format!("Length field {len} (< 20)"), b, Expect::NoReply));
    }
    for (what, tail) in [
        ("attribute length 0", vec![rfc::USER_NAME, 0, b'x', b'y']),
        ("attribute length 1", vec![rfc::USER_NAME, 1, b'x', b'y']),
        ("attribute length past the end", vec![rfc::USER_NAME, 40, b'x', b'y']),
        ("lone attribute type byte", vec![rfc::USER_NAME]),
        ("attribute type 0", vec![0, 4, b'x', b'y']),
    ] {
        cases.push(case(format!("Status-Server + {what}"), with_raw_tail(status.clone(), &tail), Expect::NoReply));
        cases.push(case(
            format!("EAP Access-Request + {what}"),
            with_raw_tail(eap_req.clone(), &tail),
            Expect::NoReply,
        ));
    }
    // 4097 bytes, Length 4097 (RFC 2865 §3: maximum 4096).
    let mut big = vec![0x41u8; 4097];
    big[0] = Code::AccessRequest.as_u8();
    big[1] = 19;
    set_length(&mut big, 4097);
    big[20] = rfc::USER_NAME;
    big[21] = 255;
    cases.push(case("4097-byte datagram", big, Expect::NoReply));
    // 4097 bytes of a real signed request followed by garbage, Length 4097.
    let mut big = eap_req.clone();
    big.resize(4097, 0);
    set_length(&mut big, 4097);
    cases.push(case("signed request padded to 4097 bytes with Length 4097", big, Expect::NoReply));

    for code in [0u8, 2, 3, 5, 11, 13, 40, 255] {
        let mut b = status.clone();
        b[0] = code;
        cases.push(case(format!("code {code} on the auth port"), b, Expect::NoReply));
    }

    // Message-Authenticator faults.
    let mut b = eap_req.clone();
    let last = b.len() - 1;
    b[last] ^= 0x01; // flips a byte of the EAP identity: MA no longer matches
    cases.push(case("EAP Access-Request with a bad Message-Authenticator", b, Expect::NoReply));
    let mut p = Packet::new_request(Code::AccessRequest, 21);
    p.attributes.push(Attribute { kind: rfc::MESSAGE_AUTHENTICATOR, value: vec![0; 15] });
    p.push_eap_message(&eap_identity_response(0, identity));
    cases.push(case("Message-Authenticator of 15 bytes", p.encode_unsigned().unwrap(), Expect::NoReply));
    let mut p = eap_access_request_packet(22, identity, &eap_identity_response(0, identity), None);
    p.attributes.push(Attribute { kind: rfc::MESSAGE_AUTHENTICATOR, value: vec![0; 16] });
    cases.push(case("two Message-Authenticators", p.encode_unsigned().unwrap(), Expect::NoReply));
    let mut p = Packet::new_request(Code::StatusServer, 23);
    p.push(rfc::NAS_IDENTIFIER, b"no-ma").unwrap();
    cases.push(case("Status-Server without Message-Authenticator", p.encode_unsigned().unwrap(), Expect::NoReply));
    let (_, wrong) = status_server(24, "not-the-secret");
    cases.push(case("Status-Server signed with another secret", wrong, Expect::NoReply));
    cases
}

/// Authenticated packets whose EAP is malformed.
fn eap_cases(server: &Server, identity: &str) -> Vec<Case> {
    let secret = &server.secret;
    let id = identity.as_bytes();
    let mut cases = Vec::new();
    let mut longer = eap_identity_response(0, identity);
    let claimed = longer.len() + 20;
    longer[2..4].copy_from_slice(&u16::try_from(claimed).unwrap().to_be_bytes());
    cases.push(case(
        "EAP Length 20 larger than the EAP-Message",
        signed_eap(identity, &longer, secret),
        Expect::NoReplyOrReject,
    ));
    let mut huge = eap_identity_response(0, identity);
    huge[2..4].copy_from_slice(&u16::MAX.to_be_bytes());
    cases.push(case("EAP Length 65535", signed_eap(identity, &huge, secret), Expect::NoReplyOrReject));
    for len in [0u16, 3] {
        let mut e = eap_identity_response(0, identity);
        e[2..4].copy_from_slice(&len.to_be_bytes());
        cases.push(case(format!("EAP Length {len} (< 4)"), signed_eap(identity, &e, secret), Expect::NoReplyOrReject));
    }
    // An EAP-Message of length 2 (no data) is EAP-Start (RFC 3579 §2.1):
    // the server may answer it with EAP-Request/Identity.
    cases.push(case("empty EAP-Message (EAP-Start)", signed_eap(identity, &[], secret), Expect::EapStart));
    for n in 1..4 {
        let e = &[2u8, 0, 0, 4][..n];
        cases.push(case(
            format!("EAP truncated to {n} bytes"),
            signed_eap(identity, e, secret),
            Expect::NoReplyOrReject,
        ));
    }
    cases.push(case(
        "EAP-Response without a Type",
        signed_eap(identity, &[2, 0, 0, 4], secret),
        Expect::NoReplyOrReject,
    ));
    let mut req = vec![1u8, 0, 0, 0, 1];
    req.extend_from_slice(id);
    let len = req.len() as u16;
    req[2..4].copy_from_slice(&len.to_be_bytes());
    cases.push(case("EAP-Request from the client", signed_eap(identity, &req, secret), Expect::NoReplyOrReject));
    cases.push(case(
        "EAP-Success from the client",
        signed_eap(identity, &[3, 0, 0, 4], secret),
        Expect::NoReplyOrReject,
    ));
    // An AKA response out of any conversation with a truncated attribute.
    let aka = [2u8, 0, 0, 12, 23, 1, 0, 0, 3, 5, 0, 0x40];
    cases.push(case(
        "EAP-AKA Challenge response with truncated AT_RES, no State",
        signed_eap(identity, &aka, secret),
        Expect::NoReplyOrReject,
    ));
    cases
}

/// Authenticated, well-formed EAP-Response/Identity with broken payment
/// attributes: whatever the server does first (decline at once, or decline
/// after authentication), it must never be an Access-Accept. The decline
/// codes themselves are checked end to end in payment.rs.
fn payment_attribute_cases(server: &Server, identity: &str) -> Vec<Case> {
    let eap = eap_identity_response(0, identity);
    let signed = |id: u8, attributes: Vec<Attribute>| {
        let mut p = eap_access_request_packet(id, identity, &eap, None);
        p.attributes.extend(attributes);
        encode_request(&p, server.secret.as_bytes()).expect("encode")
    };
    let good = payment_attributes(&details("malformed", 1000));
    let mut cases = Vec::new();
    let mut broken = good.clone();
    // Vendor 32473, sub-attribute claiming 20 bytes with 2 present.
    broken.push(Attribute { kind: rfc::VENDOR_SPECIFIC, value: vec![0, 0, 0x7e, 0xd9, eapay::AMOUNT, 20, 1, 2] });
    cases.push(case("Eapay Vendor-Specific overrunning itself", signed(60, broken), Expect::NotAccept));
    let mut broken = good.clone();
    broken.push(Attribute { kind: rfc::VENDOR_SPECIFIC, value: vec![0, 0, 0x7e] });
    cases.push(case("Vendor-Specific shorter than a Vendor-Id", signed(61, broken), Expect::NotAccept));
    let mut broken = good.clone();
    broken.push(eapay_vsa(eapay::AMOUNT, &1u64.to_be_bytes()));
    cases.push(case("second Eapay-Amount", signed(62, broken), Expect::NotAccept));
    let broken: Vec<Attribute> = good.iter().filter(|a| a.value.get(4) != Some(&eapay::AMOUNT)).cloned().collect();
    cases.push(case("no Eapay-Amount", signed(63, broken), Expect::NotAccept));
    let mut broken: Vec<Attribute> =
        good.iter().filter(|a| a.value.get(4) != Some(&eapay::TERMINAL_NONCE)).cloned().collect();
    broken.push(eapay_vsa(eapay::TERMINAL_NONCE, &[0; 200]));
    cases.push(case("Eapay-Terminal-Nonce of 200 bytes", signed(64, broken), Expect::NotAccept));
    cases
}

/// Opens a conversation (identity -> challenge) and answers the server's
/// request with a response whose attribute overruns the EAP packet.
fn in_conversation_case(server: &Server, identity: &str, method: Method) -> (UdpSocket, Case) {
    let socket = udp_socket("127.0.0.1:0");
    let payment = details("in-conversation", 1000);
    let eap = eap_identity_response(0, identity);
    let (req, wire) = eap_payment_request(30, identity, &eap, None, &payment, &server.secret);
    let reply = exchange(&socket, server.auth, &wire, REPLY_TIMEOUT)
        .unwrap_or_else(|| panic!("no reply to EAP-Response/Identity\n{}", server.stderr()));
    let p = verify_reply(&reply, Code::AccessRequest, &req.authenticator, &server.secret);
    assert_eq!(p.code, Code::AccessChallenge, "{p:?}");
    let state = p.get(rfc::STATE).expect("State in Access-Challenge").to_vec();
    let eap = p.eap_message().expect("EAP-Message in Access-Challenge");
    assert!(eap.len() >= 8 && eap[0] == 1, "not an EAP-Request: {}", hex_dump(&eap));
    let (eap_id, eap_type, subtype) = (eap[1], eap[4], eap[5]);
    assert_eq!(eap_type, method.eap_type(), "EAP type offered for a {method:?} card");
    // AT_RES (3) or AT_IDENTITY (14) claiming 20 bytes, 2 present.
    let attr = if subtype == 1 { 3 } else { 14 };
    let body = [2u8, eap_id, 0, 12, eap_type, subtype, 0, 0, attr, 5, 0, 0x40];
    let (next, wire) = eap_payment_request(31, identity, &body, Some(&state), &payment, &server.secret);
    let c = Case {
        name: format!(
            "{method:?} response (subtype {subtype}) with an attribute overrunning the EAP packet, in conversation"
        ),
        datagram: wire,
        expect: Expect::NotAccept,
        authenticator: next.authenticator,
    };
    (socket, c)
}

/// Deterministic mutations of a signed EAP Access-Request (no valid MA
/// survives them except by chance; nothing may be accepted).
fn mutated(server: &Server, identity: &str, n: usize) -> Vec<Vec<u8>> {
    let (_, base) = eap_access_request(40, identity, &eap_identity_response(0, identity), None, &server.secret);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let mut b = base.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % b.len();
                match next() % 4 {
                    0 => b[at] = next() as u8,
                    1 => b[at] ^= 1 << (next() % 8),
                    2 => b.truncate(at.max(1)),
                    _ => b.insert(at, next() as u8),
                }
            }
            b
        })
        .collect()
}

#[test]
fn malformed_datagrams_are_dropped_and_server_survives() {
    let server = Server::start_default();
    let card = server.card(Method::Aka);
    let card2 = server.card(Method::AkaPrime);

    let mut sent: Vec<(UdpSocket, Case)> = Vec::new();
    let (s, c) = in_conversation_case(&server, &card.identity, Method::Aka);
    sent.push((s, c));
    let (s, c) = in_conversation_case(&server, &card2.identity, Method::AkaPrime);
    sent.push((s, c));
    let cases = framing_cases(&server, &card.identity)
        .into_iter()
        .chain(eap_cases(&server, &card.identity))
        .chain(payment_attribute_cases(&server, &card.identity));
    for c in cases {
        sent.push((udp_socket("127.0.0.1:0"), c));
    }
    // Paced: after each case a Status-Server must be answered before the
    // next is sent. The server reads its socket in order, so every case has
    // been taken off the socket (not lost to a full receive buffer, which a
    // burst into a debug build does cause) and the server is still alive.
    for (socket, c) in &sent {
        socket
            .send_to(&c.datagram, server.auth)
            .unwrap_or_else(|e| panic!("sending case {:?} ({} bytes): {e}", c.name, c.datagram.len()));
        let answer = expect_status_answer(&server);
        assert_eq!(answer.code, Code::AccessAccept, "after case {:?}", c.name);
    }
    let fuzz_socket = udp_socket("127.0.0.1:0");
    let fuzz = mutated(&server, &card.identity, 400);
    for batch in fuzz.chunks(20) {
        for d in batch {
            fuzz_socket.send_to(d, server.auth).expect("send mutated datagram");
        }
        expect_status_answer(&server);
    }
    server.assert_running();

    let deadline = Instant::now() + NO_REPLY_WAIT;
    let mut failures = Vec::new();
    for (socket, c) in &sent {
        let wait = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let Some((reply, _)) = recv_within(socket, wait) else { continue };
        let verdict = match c.expect {
            Expect::NoReply => Err("a reply to a datagram that must be silently discarded".to_owned()),
            Expect::NoReplyOrReject | Expect::NotAccept | Expect::EapStart => {
                match aaa_proto::radius::verify_response(&reply, &c.authenticator, server.secret.as_bytes(), true) {
                    Err(e) => Err(format!("reply fails verification: {e}")),
                    Ok(p) if p.code == Code::AccessReject => Ok(()),
                    Ok(p) if c.expect == Expect::NotAccept && p.code == Code::AccessChallenge => Ok(()),
                    Ok(p)
                        if c.expect == Expect::EapStart
                            && p.code == Code::AccessChallenge
                            && p.eap_message().is_some_and(|e| e.len() >= 5 && e[0] == 1 && e[4] == 1) =>
                    {
                        Ok(())
                    }
                    Ok(p) => Err(format!("reply is {:?}", p.code)),
                }
            }
        };
        if let Err(why) = verdict {
            failures.push(format!(
                "{} [{:?}]: {why}\n    sent {}\n    got  {}",
                c.name,
                c.expect,
                hex_dump(&c.datagram),
                hex_dump(&reply)
            ));
        }
    }
    // Replies to the mutated datagrams: none may be an Access-Accept.
    while let Some((reply, _)) = recv_within(&fuzz_socket, Duration::from_millis(50)) {
        if reply.first() == Some(&Code::AccessAccept.as_u8()) {
            failures.push(format!("mutated EAP Access-Request answered with Access-Accept: {}", hex_dump(&reply)));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases misbehaved:\n{}", failures.len(), sent.len(), failures.join("\n"));

    // Still fully functional: a fresh conversation starts.
    let socket = udp_socket("127.0.0.1:0");
    let eap = eap_identity_response(0, &card.identity);
    let (req, wire) = eap_payment_request(50, &card.identity, &eap, None, &details("after", 1000), &server.secret);
    let reply = exchange(&socket, server.auth, &wire, REPLY_TIMEOUT).unwrap_or_else(|| {
        panic!("no reply to a valid EAP-Response/Identity after the malformed input\n{}", server.stderr())
    });
    let p = verify_reply(&reply, Code::AccessRequest, &req.authenticator, &server.secret);
    assert_eq!(p.code, Code::AccessChallenge);
    server.assert_running();
    assert!(!server.stderr().contains("panicked"), "the server logged a panic:\n{}", server.stderr());
}

/// Each malformed class alone against a fresh server also leaves it
/// answering (a crash on the first bad datagram would otherwise be masked by
/// nothing; this pins the simplest ones individually).
#[test]
fn tiny_and_oversized_datagrams_alone() {
    let server = Server::start_default();
    let socket = udp_socket("127.0.0.1:0");
    for d in [vec![], vec![1], vec![1, 0, 0, 20], vec![0xff; 4097], vec![1; 4096]] {
        socket.send_to(&d, server.auth).expect("send");
    }
    assert!(recv_within(&socket, NO_REPLY_WAIT).is_none(), "garbage was answered");
    expect_status_answer(&server);
    server.assert_running();
}
