//! The capture judge (`eapay_tests::capture`) can fail: a stand-in server on
//! loopback answers real Access-Requests with replies that are each wrong in
//! one way the judge must catch, and with one right reply it must pass.

use std::net::UdpSocket;
use std::time::Duration;

use aaa_proto::dictionary::rfc;
use aaa_proto::radius::{encode_request, encode_response, Attribute, Code, Packet};
use eapay_tests::capture::{Capture, RadiusPort};
use eapay_tests::eapay_vsa;

const SECRET: &str = "judge-secret";

/// One Access-Request to a stand-in server that answers with `reply(request
/// authenticator)`, captured; the judge's verdict (its panic message, or
/// None if it passed). None also when the capture cannot run here.
fn judged(reply: impl Fn(&[u8; 16]) -> Vec<u8> + Send + 'static) -> Option<Option<String>> {
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    server.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let port = server.local_addr().expect("addr").port();
    let capture = Capture::start(vec![RadiusPort { port, secret: SECRET.into(), eapay: true }], Vec::new())?;
    let answering = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let (n, from) = server.recv_from(&mut buf).expect("a request");
        let mut authenticator = [0u8; 16];
        authenticator.copy_from_slice(&buf[4..20]);
        assert!(n >= 20);
        server.send_to(&reply(&authenticator), from).expect("send the reply");
    });
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut request = Packet::new_request(Code::AccessRequest, 7);
    request.attributes.push(Attribute { kind: rfc::USER_NAME, value: b"judge@issuer.test".to_vec() });
    request.attributes.push(Attribute { kind: rfc::MESSAGE_AUTHENTICATOR, value: vec![0; 16] });
    let wire = encode_request(&request, SECRET.as_bytes()).expect("encode");
    client.send_to(&wire, ("127.0.0.1", port)).expect("send");
    let mut buf = [0u8; 4096];
    client.recv_from(&mut buf).expect("the stand-in's reply");
    answering.join().expect("the stand-in");
    let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| capture.judge()));
    Some(verdict.err().map(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    }))
}

/// An Access-Accept with these attributes, signed as a server must.
fn accept(attributes: Vec<Attribute>) -> impl Fn(&[u8; 16]) -> Vec<u8> {
    move |request_authenticator: &[u8; 16]| {
        let mut p = Packet::new(Code::AccessAccept, 7, [0; 16]);
        p.attributes = attributes.clone();
        encode_response(&p, request_authenticator, SECRET.as_bytes()).expect("encode the reply")
    }
}

fn ma() -> Attribute {
    Attribute { kind: rfc::MESSAGE_AUTHENTICATOR, value: vec![0; 16] }
}

#[test]
fn a_right_reply_passes() {
    let Some(verdict) = judged(accept(vec![ma(), eapay_vsa(8, b"A1B2C3")])) else { return };
    assert_eq!(verdict, None);
}

#[test]
fn a_reply_without_message_authenticator_fails() {
    let Some(verdict) = judged(accept(vec![eapay_vsa(8, b"A1B2C3")])) else { return };
    let why = verdict.expect("the judge must refuse it");
    assert!(why.contains("not Message-Authenticator (80)") && why.contains("frame"), "{why}");
}

#[test]
fn a_message_authenticator_that_is_not_first_fails() {
    let Some(verdict) = judged(accept(vec![eapay_vsa(8, b"A1B2C3"), ma()])) else { return };
    let why = verdict.expect("the judge must refuse it");
    assert!(why.contains("not Message-Authenticator (80)"), "{why}");
}

#[test]
fn a_wrong_response_authenticator_fails_in_tshark_too() {
    let good = accept(vec![ma()]);
    let Some(verdict) = judged(move |request| {
        let mut reply = good(request);
        reply[4] ^= 1;
        reply
    }) else {
        return;
    };
    let why = verdict.expect("the judge must refuse it");
    // tshark's validate_authenticator and our own check both see it.
    assert!(why.contains("tshark: ") && why.contains("Access-Accept"), "{why}");
    assert!(why.contains("reply from eapay-server: "), "{why}");
}

#[test]
fn an_eapay_attribute_unknown_to_the_dictionary_fails() {
    let Some(verdict) = judged(accept(vec![ma(), eapay_vsa(200, b"?")])) else { return };
    let why = verdict.expect("the judge must refuse it");
    assert!(why.contains("an eapay attribute without its name"), "{why}");
}
