//! Interoperability with FreeRADIUS's `radclient` (Debian freeradius-utils).
//!
//! radclient is the reference the codec is judged against: it signs requests
//! the way every FreeRADIUS-based NAS does and verifies our replies with
//! FreeRADIUS's own code, including the MPPE key decryption eapol_test relies
//! on. Skipped (with a message) when radclient is not installed, unless
//! EAPAY_REQUIRE_INTEROP=1.

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aaa_proto::dictionary::rfc;
use aaa_proto::radius::{
    encode_response, encode_response_to, push_mppe_keys, unhide_user_password, verify_request, Code, Packet,
};

const SECRET: &str = "interop-secret";

fn radclient_available() -> bool {
    let found = Command::new("radclient").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        if std::env::var("EAPAY_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("radclient not found and EAPAY_REQUIRE_INTEROP=1");
        }
        eprintln!("skipping radclient interop: radclient not installed (apt-get install freeradius-utils)");
    }
    found
}

/// Starts radclient against a fresh local socket, sending `attributes`.
fn start(command: &str, attributes: &str) -> (UdpSocket, Child) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let port = socket.local_addr().expect("addr").port();
    let mut child = Command::new("radclient")
        .args(["-x", "-t", "2", "-r", "1", &format!("127.0.0.1:{port}"), command, SECRET])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn radclient");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(attributes.as_bytes()).expect("write attributes");
    drop(stdin);
    (socket, child)
}

fn receive(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 4096];
    let (n, from) = socket.recv_from(&mut buf).expect("radclient sent nothing");
    (buf[..n].to_vec(), from)
}

/// Waits for radclient to exit and returns everything it printed.
fn finish(mut child: Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("radclient did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut out).expect("stdout");
    child.stderr.take().expect("stderr").read_to_string(&mut out).expect("stderr");
    out
}

#[test]
fn access_request_and_accept_with_mppe_keys() {
    if !radclient_available() {
        return;
    }
    let (socket, child) = start("auth", "User-Name = \"x\", Message-Authenticator = 0x00, User-Password = \"pw\"\n");
    let (datagram, from) = receive(&socket);
    let request = Packet::decode(&datagram).expect("decode radclient's request");
    assert_eq!(request.code, Code::AccessRequest);
    verify_request(&datagram, &request, SECRET.as_bytes(), true).expect("radclient's Message-Authenticator");
    assert!(verify_request(&datagram, &request, b"other-secret", false).is_err());
    let hidden = request.get(rfc::USER_PASSWORD).expect("User-Password");
    assert_eq!(unhide_user_password(hidden, SECRET.as_bytes(), &request.authenticator).unwrap(), b"pw");

    let msk: [u8; 64] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
    let mut reply = Packet::reply_to(&request, Code::AccessAccept);
    reply.push(rfc::REPLY_MESSAGE, b"approved").unwrap();
    push_mppe_keys(&mut reply, &msk, SECRET.as_bytes(), &request.authenticator).unwrap();
    let wire = encode_response(&reply, &request.authenticator, SECRET.as_bytes()).unwrap();
    socket.send_to(&wire, from).expect("send");

    let out = finish(child);
    assert!(out.contains("Received Access-Accept"), "{out}");
    assert!(out.contains("Reply-Message = \"approved\""), "{out}");
    // radclient decrypts the keys with FreeRADIUS's RFC 2548 code.
    assert!(out.contains(&format!("MS-MPPE-Recv-Key = 0x{}", hex::encode(&msk[..32]))), "{out}");
    assert!(out.contains(&format!("MS-MPPE-Send-Key = 0x{}", hex::encode(&msk[32..]))), "{out}");
    assert!(!out.contains("verification failed"), "{out}");
}

#[test]
fn eap_access_request_and_challenge() {
    if !radclient_available() {
        return;
    }
    // EAP-Response/Identity "card"; radclient adds no EAP logic of its own.
    let (socket, child) =
        start("auth", "User-Name = \"card\", EAP-Message = 0x0201000901636172640a, Message-Authenticator = 0x00\n");
    let (datagram, from) = receive(&socket);
    let request = Packet::decode(&datagram).unwrap();
    verify_request(&datagram, &request, SECRET.as_bytes(), true).expect("MA over an EAP request");
    assert_eq!(request.eap_message(), Some(hex::decode("0201000901636172640a").unwrap()));

    let mut reply = Packet::reply_to(&request, Code::AccessChallenge);
    let big_eap: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
    reply.push_eap_message(&big_eap);
    reply.push(rfc::STATE, b"state-1").unwrap();
    let wire = encode_response(&reply, &request.authenticator, SECRET.as_bytes()).unwrap();
    socket.send_to(&wire, from).unwrap();
    let out = finish(child);
    assert!(out.contains("Received Access-Challenge"), "{out}");
    assert!(!out.contains("verification failed"), "{out}");
}

#[test]
fn accounting_request_and_response() {
    if !radclient_available() {
        return;
    }
    let (socket, child) =
        start("acct", "Acct-Status-Type = Start, Acct-Session-Id = \"s-1\", Message-Authenticator = 0x00\n");
    let (datagram, from) = receive(&socket);
    let request = Packet::decode(&datagram).unwrap();
    assert_eq!(request.code, Code::AccountingRequest);
    // Checks both the MA (zero authenticator) and the MD5 Request Authenticator.
    verify_request(&datagram, &request, SECRET.as_bytes(), true).expect("radclient's accounting signatures");
    assert!(verify_request(&datagram, &request, b"other-secret", false).is_err());

    let reply = Packet::reply_to(&request, Code::AccountingResponse);
    let wire = encode_response(&reply, &request.authenticator, SECRET.as_bytes()).unwrap();
    socket.send_to(&wire, from).unwrap();
    let out = finish(child);
    assert!(out.contains("Received Accounting-Response"), "{out}");
    assert!(!out.contains("verification failed"), "{out}");
}

#[test]
fn status_server() {
    if !radclient_available() {
        return;
    }
    let (socket, child) = start("status", "Message-Authenticator = 0x00\n");
    let (datagram, from) = receive(&socket);
    let request = Packet::decode(&datagram).unwrap();
    assert_eq!(request.code, Code::StatusServer);
    verify_request(&datagram, &request, SECRET.as_bytes(), false).expect("Status-Server MA");
    let reply = Packet::reply_to(&request, Code::AccessAccept);
    let wire = encode_response_to(&reply, Code::StatusServer, &request.authenticator, SECRET.as_bytes()).unwrap();
    socket.send_to(&wire, from).unwrap();
    let out = finish(child);
    assert!(out.contains("Received Access-Accept"), "{out}");
}

/// radclient must actually be checking: a reply signed with another secret
/// is refused.
#[test]
fn radclient_rejects_a_wrongly_signed_reply() {
    if !radclient_available() {
        return;
    }
    let (socket, child) = start("auth", "User-Name = \"x\", Message-Authenticator = 0x00, User-Password = \"pw\"\n");
    let (datagram, from) = receive(&socket);
    let request = Packet::decode(&datagram).unwrap();
    let reply = Packet::reply_to(&request, Code::AccessAccept);
    let wire = encode_response(&reply, &request.authenticator, b"not-the-secret").unwrap();
    socket.send_to(&wire, from).unwrap();
    let out = finish(child);
    assert!(!out.contains("Received Access-Accept"), "{out}");
}
