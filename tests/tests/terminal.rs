//! The merchant terminal as a merchant runs it: `eapay-card serve` in one
//! process, `eapay-server` in another, `eapay-terminal pay` in a third, over
//! loopback sockets. Proxies between them lose or damage the server's
//! answers and record every byte the terminal receives.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::time::Duration;

use aaa_proto::payment::is_approval_code;
use e_card::card_file::CardFile;
use eapay_tests::proxy::{Mode, RadiusProxy, StreamRecorder};
use eapay_tests::terminal::{error_lines, pay_args, terminal, word_after, CardProcess};
use eapay_tests::{has_token, Method, Server, ToolOutput, DEFAULT_LIMIT, MERCHANT};

fn pay(server: &Server, card: &CardProcess, amount: &str, reversals: &Path, extra: &[&str]) -> ToolOutput {
    pay_via(server, server.auth, server.acct, card, amount, reversals, extra)
}

fn pay_via(
    server: &Server,
    auth: SocketAddr,
    acct: SocketAddr,
    card: &CardProcess,
    amount: &str,
    reversals: &Path,
    extra: &[&str],
) -> ToolOutput {
    let mut args = pay_args(server, auth, acct, reversals);
    args.extend(["--amount", amount, "--currency", "USD", "--card-link", &card.link].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    terminal(&args)
}

fn status_is(server: &Server, txn: &str, status: &str) {
    let text = server.txn_show(MERCHANT, txn);
    assert!(has_token(&text.to_lowercase(), status), "txn show {MERCHANT}:{txn} should say {status}:\n{text}");
}

fn exit_code(out: &ToolOutput) -> Option<i32> {
    out.status.code()
}

#[test]
fn card_server_and_terminal_in_three_processes_approve_and_decline() {
    for method in [Method::AkaPrime, Method::Tls, Method::Ttls] {
        three_processes(method);
    }
}

/// One card of `method` served by `eapay-card serve`, paying twice.
fn three_processes(method: Method) {
    let server = Server::start_default();
    let _capture = server.capture();
    let card = server.card_with(
        method,
        &["--confirmation", "optional", "--pin", "2580"][..if method == Method::Ttls { 4 } else { 2 }],
    );
    let card_process = CardProcess::serve(&card.json);
    let reversals = server.scratch("reversals.json");
    let issuer_pub = server.data_dir.join("issuer.pub");
    let issuer_pub = issuer_pub.to_str().expect("utf-8 path");

    let approved = pay(&server, &card_process, "12.50", &reversals, &["--issuer-key", issuer_pub]);
    assert_eq!(exit_code(&approved), Some(0), "approved payment exits 0:\n{}\n{}", approved.all(), server.stderr());
    let first = approved.stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("APPROVED 12.50 USD"), "first line: {first}\n{}", approved.all());
    let code = word_after(first, "code").expect("approval code on the first line");
    assert!(is_approval_code(&code), "{code}");
    assert!(approved.stdout.contains("receipt verified with issuer key"), "{}", approved.stdout);
    let txn = word_after(&approved.stdout, "transaction").expect("transaction id");
    status_is(&server, &txn, "approved");
    assert!(server.txn_show(MERCHANT, &txn).contains(&code));
    // The card saw the same approval inside EAP, and what the terminal displays.
    let card_saw = card_process.wait_for_output(&code, Duration::from_secs(5));
    assert!(card_saw.contains(&code), "the card prints the approval it got:\n{card_saw}");

    // Over the credit limit: declined, exit 1, with the decline code.
    let declined = pay(&server, &card_process, "10000.00", &reversals, &[]);
    assert_eq!(exit_code(&declined), Some(1), "declined payment exits 1:\n{}", declined.all());
    let first = declined.stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("DECLINED 61 Exceeds-Limit"), "first line: {first}\n{}", declined.all());
    let txn = word_after(&declined.stdout, "transaction").expect("transaction id");
    status_is(&server, &txn, "declined");
    assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT - 1250));

    // The card kept its state across the two payments (written back to its
    // file): the USIM's SQN, or the TLS session it resumes with.
    let file = CardFile::load(&card.json).expect("card file");
    match method {
        Method::Tls | Method::Ttls => {
            assert!(file.tls.as_ref().is_some_and(|t| t.session.is_some()), "{method:?}: TLS session persisted")
        }
        _ => assert!(file.aka.as_ref().is_some_and(|a| a.sqn > 0), "SQN persisted: {:?}", file.aka),
    }
}

/// DESIGN.md §1: the server approved, the answer was lost. The terminal
/// times out, keeps the reversal, and delivers it with the next payment once
/// the server is back; the ledger then shows the authorization reversed.
#[test]
fn a_lost_approval_is_reversed_once_the_server_is_back() {
    let mut server = Server::start_default();
    let _capture = server.capture();
    let card = server.card(Method::Aka);
    let card_process = CardProcess::serve(&card.json);
    let reversals = server.scratch("reversals.json");
    let proxy = RadiusProxy::start(server.auth, Mode::LoseApproval);

    let lost = std::thread::scope(|s| {
        let paying = s.spawn(|| {
            pay_via(
                &server,
                proxy.addr,
                server.acct,
                &card_process,
                "7.00",
                &reversals,
                &["--timeout", "300ms", "--retries", "2", "--transaction-id", "LOST-1"],
            )
        });
        // The server decided and committed; stop it before the terminal's
        // retransmission could fetch the cached answer.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !proxy.lost_approval() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(proxy.lost_approval(), "the server never approved:\n{}", server.stderr());
        server.kill9();
        paying.join().expect("pay thread")
    });
    assert_eq!(exit_code(&lost), Some(2), "a lost answer is an error:\n{}", lost.all());
    let errors = error_lines(&lost);
    assert_eq!(errors.len(), 1, "one error line: {errors:?}");
    assert!(errors[0].contains("no valid answer") && errors[0].contains("reversal of LOST-1 stored"), "{}", errors[0]);
    let stored = std::fs::read_to_string(&reversals).expect("reversal store written");
    assert!(stored.contains("LOST-1"), "{stored}");
    status_is(&server, "LOST-1", "approved");

    server.restart();
    let next = pay(&server, &card_process, "1.00", &reversals, &[]);
    assert_eq!(exit_code(&next), Some(0), "{}", next.all());
    assert!(next.stdout.contains("reversal of LOST-1 delivered"), "{}", next.stdout);
    status_is(&server, "LOST-1", "reversed");
    let stored = std::fs::read_to_string(&reversals).expect("reversal store");
    assert!(!stored.contains("LOST-1"), "acknowledged reversal removed:\n{stored}");
    assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT - 100));
}

/// A server answering with a bad authenticator or a wrong identifier: one
/// clear error line, exit 2, and a stored reversal that `flush` delivers.
#[test]
fn damaged_answers_are_refused_and_reversed() {
    let server = Server::start_default();
    let _capture = server.capture();
    let card = server.card(Method::Aka);
    let card_process = CardProcess::serve(&card.json);
    let reversals = server.scratch("reversals.json");
    let proxy = RadiusProxy::start(server.auth, Mode::CorruptAuthenticator);
    let fast = ["--timeout", "200ms", "--retries", "1"];

    let mut outputs = Vec::new();
    for (mode, evidence, txn) in [
        (Mode::CorruptAuthenticator, "with a bad authenticator", "BADAUTH-1"),
        (Mode::WrongIdentifier, "with a wrong identifier", "BADID-1"),
    ] {
        proxy.set_mode(mode);
        let mut extra = fast.to_vec();
        extra.extend(["--transaction-id", txn]);
        let out = pay_via(&server, proxy.addr, server.acct, &card_process, "3.00", &reversals, &extra);
        assert_eq!(exit_code(&out), Some(2), "{mode:?}:\n{}", out.all());
        let errors = error_lines(&out);
        assert_eq!(errors.len(), 1, "{mode:?}: one error line: {errors:?}");
        assert!(errors[0].contains(evidence), "{mode:?}: {}", errors[0]);
        assert!(errors[0].contains(&format!("reversal of {txn} stored")), "{}", errors[0]);
        outputs.push(out);
    }
    // The accounting port is not damaged: the second payment delivered the
    // first one's reversal before it started.
    assert!(outputs[1].stdout.contains("reversal of BADAUTH-1 delivered"), "{}", outputs[1].all());

    let mut args = pay_args(&server, server.auth, server.acct, &reversals);
    args.retain(|a| a != "pay" && a != "--merchant" && a != MERCHANT);
    args.insert(0, "flush".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let flushed = terminal(&args);
    assert_eq!(exit_code(&flushed), Some(0), "{}", flushed.all());
    assert!(flushed.stdout.contains("reversal of BADID-1 delivered"), "{}", flushed.stdout);
    for txn in ["BADAUTH-1", "BADID-1"] {
        // Never approved: the reversal leaves a tombstone, so a late
        // original would be declined.
        let text = server.txn_show(MERCHANT, txn);
        assert!(text.to_lowercase().contains("revers") || text.to_lowercase().contains("tombstone"), "{text}");
    }
    assert!(flushed.stdout.contains("no reversal pending"), "{}", flushed.stdout);
}

/// The terminal fails over to the second server when the first is silent.
#[test]
fn a_silent_first_server_fails_over_to_the_second() {
    let server = Server::start_default();
    let _capture = server.capture();
    let card = server.card(Method::Aka);
    let card_process = CardProcess::serve(&card.json);
    let reversals = server.scratch("reversals.json");
    let silent = UdpSocket::bind("127.0.0.1:0").expect("silent socket");
    let silent_addr = silent.local_addr().expect("address").to_string();
    let auth = server.auth.to_string();
    // The silent server first, the real one second.
    let mut args = pay_args(&server, server.auth, server.acct, &reversals);
    let at = args.iter().position(|a| a == "--server").expect("--server");
    args[at + 1] = silent_addr;
    args.extend(
        ["--server", &auth, "--amount", "2.00", "--currency", "USD", "--card-link", &card_process.link]
            .map(String::from),
    );
    args.extend(["--timeout", "200ms", "--retries", "1"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = terminal(&args);
    assert_eq!(exit_code(&out), Some(0), "{}", out.all());
    assert!(out.stdout.starts_with("APPROVED 2.00 USD"), "{}", out.stdout);
    assert!(out.stderr.contains("failing over"), "the failover is logged:\n{}", out.stderr);
}

/// No byte of the card's keys reaches the terminal: not on the card link,
/// not in the server's answers, not in what it prints or logs (at trace).
#[test]
fn no_card_secret_reaches_the_terminal() {
    for method in [Method::AkaPrime, Method::Tls, Method::Ttls] {
        no_secret_of(method);
    }
}

fn no_secret_of(method: Method) {
    let server = Server::start_default();
    let _capture = server.capture();
    let card = server.card_with(
        method,
        &["--confirmation", "optional", "--pin", "2580"][..if method == Method::Ttls { 4 } else { 2 }],
    );
    let secrets = card_secrets(&CardFile::load(&card.json).expect("card file"));
    let card_process = CardProcess::serve(&card.json);
    let card_link = StreamRecorder::start(card_process.addr);
    let radius = RadiusProxy::start(server.auth, Mode::Forward);
    let reversals = server.scratch("reversals.json");

    let mut args = pay_args(&server, radius.addr, server.acct, &reversals);
    let link = format!("tcp://{}", card_link.addr);
    args.extend(["--amount", "4.20", "--currency", "USD", "--card-link", &link].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = terminal(&args);
    assert_eq!(exit_code(&out), Some(0), "{}", out.all());
    assert!(out.stderr.contains("TRACE") || out.stderr.contains("DEBUG"), "logging was on:\n{}", out.stderr);

    let from_card = card_link.to_client();
    let from_server: Vec<u8> = radius.to_client().concat();
    assert!(from_card.len() > 100 && from_server.len() > 100, "the proxies saw the conversation");
    let printed = format!("{}{}", out.stdout, out.stderr).into_bytes();
    for (name, secret) in &secrets {
        for (channel, bytes) in [("card link", &from_card), ("RADIUS", &from_server), ("output", &printed)] {
            assert!(
                !contains(bytes, secret),
                "{method:?}: {name} appears in what the terminal received on the {channel}"
            );
            let hex_lower = hex::encode(secret).into_bytes();
            let hex_upper = hex::encode_upper(secret).into_bytes();
            assert!(
                !contains(bytes, &hex_lower) && !contains(bytes, &hex_upper),
                "{name} (hex) appears in the terminal's {channel}"
            );
        }
    }
}

/// The card's long-term secrets, raw. Substrings of 8 bytes are enough to
/// catch a leak of any part.
fn card_secrets(card: &CardFile) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pieces = |name: &str, bytes: &[u8]| {
        for (i, part) in bytes.chunks(8).enumerate() {
            out.push((format!("{name}[{}..]", i * 8), part.to_vec()));
        }
    };
    if let Some(aka) = &card.aka {
        for (name, text) in [("K", &aka.k), ("OPc", &aka.opc)] {
            pieces(name, &hex::decode(text).expect("hex key"));
        }
    }
    if let Some(tls) = &card.tls {
        // The private scalar of the card's key (its public half is in the
        // certificate, which the terminal relays).
        let key = openssl::pkey::PKey::private_key_from_pem(tls.key.as_bytes()).expect("the card's key");
        let scalar = key.ec_key().expect("an ECDSA card key").private_key().to_vec();
        pieces("card key", &scalar);
        if let Some(pin) = &tls.pin {
            out.push(("PIN".into(), pin.as_bytes().to_vec()));
        }
    }
    assert!(!out.is_empty(), "the card has secrets to look for");
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A card link that fails in each way: one error line, exit 2; a reversal
/// only once payment attributes reached the server.
#[test]
fn broken_card_links_are_one_line_errors() {
    let server = Server::start_default();
    let _capture = server.capture();
    let reversals = server.scratch("reversals.json");
    let base = pay_args(&server, server.auth, server.acct, &reversals);
    let run = |link: &str, txn: &str| {
        let mut args = base.clone();
        args.extend(
            [
                "--amount",
                "1.00",
                "--currency",
                "USD",
                "--card-link",
                link,
                "--card-timeout",
                "3s",
                "--transaction-id",
                txn,
            ]
            .map(String::from),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        terminal(&args)
    };

    // Nobody listening.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let out = run(&format!("tcp://{closed}"), "LINK-REFUSED");
    assert_eq!(exit_code(&out), Some(2), "{}", out.all());
    assert_eq!(error_lines(&out).len(), 1, "{}", out.stderr);
    assert!(error_lines(&out)[0].contains("card link"), "{}", out.stderr);

    // Misbehaving cards: garbage, an oversize frame, silence, a card that
    // stalls halfway through a frame (the card timeout covers the whole
    // frame, so a slow card holds only its own payment), and a card that
    // leaves after the server's first challenge.
    let cases: [(&str, &[u8], &str); 4] = [
        ("LINK-GARBAGE", b"\x07\x07garbage", "EAPOL version 7"),
        ("LINK-OVERSIZE", b"\x02\x00\xff\xff", "exceeds the 4096-byte limit"),
        ("LINK-SILENT", b"", "did not answer within"),
        ("LINK-HALF", b"\x02\xe0\x00\x10\x02", "did not answer within"),
    ];
    for (txn, reply, evidence) in cases {
        let fake = fake_card(move |mut s| {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(reply);
            std::thread::sleep(Duration::from_secs(5));
        });
        let out = run(&format!("tcp://{fake}"), txn);
        assert_eq!(exit_code(&out), Some(2), "{txn}: {}", out.all());
        let errors = error_lines(&out);
        assert_eq!(errors.len(), 1, "{txn}: {}", out.stderr);
        assert!(errors[0].contains(evidence), "{txn}: {}", errors[0]);
        assert!(!errors[0].contains("reversal"), "{txn}: nothing reached the server: {}", errors[0]);
    }

    // A card that consents, presents its identity, and leaves mid-method:
    // the server has seen the payment, so the terminal owes a reversal.
    let card = server.card(Method::Aka);
    let identity = card.identity.clone();
    let fake = fake_card(move |mut s| {
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf); // details
        let _ = s.write_all(&[2, 0xE0, 0, 2, 2, 1]); // consent
        let _ = s.write_all(&[2, 1, 0, 0]); // EAPOL-Start
        let mut header = [0u8; 4];
        let _ = s.read_exact(&mut header); // EAP-Request/Identity
        let mut body = vec![0u8; usize::from(u16::from_be_bytes([header[2], header[3]]))];
        let _ = s.read_exact(&mut body);
        let mut eap = vec![2, body[1], 0, 0, 1];
        eap.extend_from_slice(identity.as_bytes());
        let len = (eap.len() as u16).to_be_bytes();
        eap[2..4].copy_from_slice(&len);
        let mut frame = vec![2, 0, len[0], len[1]];
        frame.extend_from_slice(&eap);
        let _ = s.write_all(&frame);
        let _ = s.read(&mut buf); // the server's challenge, relayed; then hang up
    });
    let out = run(&format!("tcp://{fake}"), "LINK-GONE");
    assert_eq!(exit_code(&out), Some(2), "{}", out.all());
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert!(errors[0].contains("closed the card link"), "{}", errors[0]);
    assert!(errors[0].contains("reversal of LINK-GONE stored"), "{}", errors[0]);
}

/// A one-connection card played by `behave`.
fn fake_card(behave: impl FnOnce(std::net::TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake card");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        if let Ok((s, _)) = listener.accept() {
            behave(s);
        }
    });
    addr
}

/// `verify-receipt` checks the receipt `pay` printed, offline; one flipped
/// bit and it fails.
#[test]
fn receipts_verify_offline() {
    let server = Server::start_default();
    let _capture = server.capture();
    let card = server.card(Method::Aka);
    let card_process = CardProcess::serve(&card.json);
    let reversals = server.scratch("reversals.json");
    let out = pay(&server, &card_process, "9.99", &reversals, &[]);
    assert_eq!(exit_code(&out), Some(0), "{}", out.all());
    let receipt = word_after(&out.stdout, "receipt").expect("receipt printed");
    let key = server.data_dir.join("issuer.pub");
    let key = key.to_str().expect("utf-8");

    let valid = terminal(&["verify-receipt", "--receipt", &receipt, "--issuer-key", key]);
    assert_eq!(exit_code(&valid), Some(0), "{}", valid.all());
    assert!(valid.stdout.starts_with("receipt VALID: approval code"), "{}", valid.stdout);
    assert!(valid.stdout.contains("9.99 USD") && valid.stdout.contains(MERCHANT), "{}", valid.stdout);

    let mut bytes = hex::decode(&receipt).expect("hex");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let forged = terminal(&["verify-receipt", "--receipt", &hex::encode(bytes), "--issuer-key", key]);
    assert_eq!(exit_code(&forged), Some(1), "{}", forged.all());
    assert!(forged.stdout.contains("INVALID"), "{}", forged.stdout);

    let garbage = terminal(&["verify-receipt", "--receipt", "zz", "--issuer-key", key]);
    assert_eq!(exit_code(&garbage), Some(2), "{}", garbage.all());
}

/// Bad arguments: one line on stderr, exit 2, nothing sent.
#[test]
fn bad_arguments_are_one_line() {
    let pay = "pay --server 127.0.0.1:1812 --secret s --merchant M";
    for line in [
        "--amount 12.505 --currency USD --card-link tcp://127.0.0.1:9",
        "--amount 1 --currency XYZ --card-link tcp://127.0.0.1:9",
        "--amount 1 --currency USD --card-link card",
        "--amount 1 --currency USD --protocol diameter --card-link tcp://127.0.0.1:9",
        "--amount 1 --currency USD --server nowhere",
        "--amount 1 --currency USD --server no-such-host.invalid:1812",
        "--amount 1 --currency USD",
    ]
    .map(|extra| format!("{pay} {extra}"))
    .into_iter()
    .chain(["flush --secret s".to_string()])
    {
        // Whatever fails late must not leave a reversal store in the repository.
        let scratch = tempfile::tempdir().unwrap();
        let store = scratch.path().join("reversals.json");
        let line = format!("{line} --reversals {}", store.display());
        let args: Vec<&str> = line.split_whitespace().collect();
        let out = terminal(&args);
        assert_eq!(exit_code(&out), Some(2), "{args:?}: {}", out.all());
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line: {}", out.stderr);
        assert!(lines[0].starts_with("eapay-terminal: "), "{}", lines[0]);
    }
}

/// A terminal maker's build (`--no-default-features`) links no card code.
#[test]
fn the_terminal_without_simulated_cards_links_no_card_code() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(eapay_tests::repo_root()).args([
        "tree",
        "--offline",
        "-p",
        "nas-terminal",
        "--no-default-features",
        "-e",
        "normal",
        "--prefix",
        "none",
    ]);
    let out = eapay_tests::run_with_timeout(cmd, None, Duration::from_secs(120));
    assert!(out.success(), "{}", out.all());
    assert!(out.stdout.contains("aaa-proto"), "{}", out.stdout);
    for forbidden in ["e-card", "eap-methods"] {
        assert!(
            !out.stdout.lines().any(|l| l.split_whitespace().next() == Some(forbidden)),
            "{forbidden} is linked into the terminal:\n{}",
            out.stdout
        );
    }
}

/// `pay --card FILE` plays the card inside the terminal's process (the
/// `simulated-card` feature) and writes its SQN back to the file.
#[test]
fn a_simulated_card_pays_in_process() {
    let server = Server::start_default();
    let _capture = server.capture();
    let card = server.card(Method::AkaPrime);
    let reversals = server.scratch("reversals.json");
    let mut args = pay_args(&server, server.auth, server.acct, &reversals);
    let file = card.json.display().to_string();
    args.extend(["--amount", "5.00", "--currency", "840", "--card", &file].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = terminal(&args);
    assert_eq!(exit_code(&out), Some(0), "{}", out.all());
    assert!(out.stdout.starts_with("APPROVED 5.00 USD  approval code "), "{}", out.stdout);
    let saved = CardFile::load(&card.json).expect("card file");
    assert!(saved.aka.as_ref().is_some_and(|a| a.sqn > 0), "SQN written back: {:?}", saved.aka);
}
