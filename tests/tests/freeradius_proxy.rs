//! FreeRADIUS 3.2 as the card payment agency's proxy (issue 14 §3): the
//! terminal (eapay-terminal, and eapol_test with `-N` payment attributes)
//! talks to FreeRADIUS, which proxies the issuer's realm to eapay-server
//! (`scripts/freeradius-proxy.sh`: realm, two home servers for
//! authentication and accounting, Status-Server checks, the eapay
//! dictionary loaded, no EAP at the proxy, nothing filtered).
//!
//! - Payments with AKA, AKA', TLS and TTLS cards (the card confirming, played
//!   in the terminal's process) are approved through the proxy; approval
//!   code, amount and receipt arrive intact (a receipt over 247 bytes, split
//!   over two Eapay-Receipt attributes, too) and match the ledger. The
//!   terminal keeps its strict reply checks: FreeRADIUS passes
//!   eapay-server's Message-Authenticator-first order on.
//! - eapol_test pays through the proxy: MS-MPPE keys (re-encrypted by
//!   FreeRADIUS with the terminal's secret) match its MSK, and the Eapay
//!   attributes of the final Access-Accept are the ledger's; a decline's
//!   Eapay-Decline-Code arrives intact, to eapol_test and to the terminal
//!   (61 over the limit, 62 blocked card); a terminal's stored reversal
//!   reaches the ledger through the proxy's accounting port.
//! - Proxy-State (RFC 2865 §5.33): eapay-server echoes the Proxy-State
//!   attributes of a request unchanged and in order (Access-Challenge,
//!   Access-Reject, Accounting-Response); through FreeRADIUS the terminal's
//!   own come back, FreeRADIUS's are not leaked.
//! - Status-Server: a home server that stops answering is marked zombie, the
//!   Status-Server FreeRADIUS then sends is answered by eapay-server and
//!   marks it alive; one that stays silent is marked dead.
//!
//! FreeRADIUS is `$FREERADIUS`, else `freeradius` or `radiusd` in PATH or
//! /usr/sbin; without it (or eapol_test) the tests print a SKIP line, and
//! fail under `EAPAY_REQUIRE_INTEROP=1`.

use eapay_tests::capture::{Capture, RadiusPort};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aaa_proto::dictionary::eapay;
use aaa_proto::dictionary::eapay::{DeclineCode, SettlementAction};
use aaa_proto::dictionary::rfc;
use aaa_proto::payment::{is_approval_code, PaymentDetails};
use aaa_proto::radius::{encode_request, Code, Packet, MAX_VENDOR_VALUE_LEN};
use eapay_tests::eapol::{assert_approved, assert_declined, assert_success, eapay_attributes_in};
use eapay_tests::terminal::{error_lines, terminal, word_after};
use eapay_tests::{
    details, eap_access_request_packet, eap_identity_response, eapol_test, eapol_test_payment_args, exchange,
    find_in_path, freeradius, has_token, last_lines, repo_root, require_tool, run_server_command, run_with_timeout,
    stopped_counter, udp_socket, verify_reply, Card, Method, Server, ToolOutput, MERCHANT, REPLY_TIMEOUT, TOOL_TIMEOUT,
};

/// The terminals' secret at the proxy (eapay-server has its own, the
/// harness's, for the proxy).
const TERMINAL_SECRET: &str = "terminals-to-agency-proxy";
const VENDOR: u32 = eapay::VENDOR_ID;

fn script() -> PathBuf {
    repo_root().join("scripts/freeradius-proxy.sh")
}

/// Two free UDP ports of 127.0.0.1 (auth, acct).
fn two_free_ports() -> (u16, u16) {
    let a = UdpSocket::bind("127.0.0.1:0").expect("a free UDP port");
    let b = UdpSocket::bind("127.0.0.1:0").expect("a free UDP port");
    (a.local_addr().expect("address").port(), b.local_addr().expect("address").port())
}

/// FreeRADIUS started by scripts/freeradius-proxy.sh in front of `server`;
/// stopped (by its pid file) when dropped.
struct Proxy {
    run_dir: PathBuf,
    auth: SocketAddr,
    acct: SocketAddr,
    binary: PathBuf,
}

/// Captures both legs, terminal to FreeRADIUS (its secret) and FreeRADIUS
/// to eapay-server (the server's; its replies held to eapay's rules).
fn capture_both(server: &Server, proxy: &Proxy) -> Option<Capture> {
    let leg = |port: u16, secret: &str, eapay| RadiusPort { port, secret: secret.into(), eapay };
    Capture::start(
        vec![
            leg(server.auth.port(), &server.secret, true),
            leg(server.acct.port(), &server.secret, true),
            leg(proxy.auth.port(), TERMINAL_SECRET, false),
            leg(proxy.acct.port(), TERMINAL_SECRET, false),
        ],
        Vec::new(),
    )
}

impl Proxy {
    /// Proxies `server`'s realm to its auth and acct ports with the secret
    /// it has for 127.0.0.1; retries if another process took a port.
    fn start(binary: &Path, server: &Server, run_dir: &Path) -> Proxy {
        Proxy::start_with(binary, server, run_dir, &[])
    }

    /// [`Proxy::start`] with more arguments for the script.
    fn start_with(binary: &Path, server: &Server, run_dir: &Path, extra: &[&str]) -> Proxy {
        let mut last = None;
        for _ in 0..5 {
            let (port, acct_port) = two_free_ports();
            let mut cmd = Command::new(script());
            cmd.args(["--home", &server.auth.to_string(), "--home-acct", &server.acct.to_string()])
                .args(["--home-secret", &server.secret, "--realm", &server.realm])
                .args(["--port", &port.to_string(), "--acct-port", &acct_port.to_string()])
                .args(["--secret", TERMINAL_SECRET, "--debug", "--run-dir"])
                .arg(run_dir)
                .args(extra)
                .env("FREERADIUS", binary);
            let out = run_with_timeout(cmd, None, TOOL_TIMEOUT);
            if out.success() {
                for line in [
                    format!("listening radius auth 127.0.0.1:{port}"),
                    format!("listening radius acct 127.0.0.1:{acct_port}"),
                ] {
                    assert!(out.stdout.lines().any(|l| l == line), "no `{line}` line:\n{}", out.tail(20));
                }
                assert!(out.stdout.lines().any(|l| l.starts_with("freeradius pid ")), "{}", out.tail(20));
                return Proxy {
                    run_dir: run_dir.to_owned(),
                    auth: SocketAddr::from(([127, 0, 0, 1], port)),
                    acct: SocketAddr::from(([127, 0, 0, 1], acct_port)),
                    binary: binary.to_owned(),
                };
            }
            if !out.stderr.contains("already in use") {
                panic!("scripts/freeradius-proxy.sh failed:\n{}", out.tail(40));
            }
            last = Some(out);
        }
        panic!("no free ports for FreeRADIUS after 5 tries:\n{}", last.map(|o| o.tail(20)).unwrap_or_default());
    }

    fn stop(&self) -> ToolOutput {
        let mut cmd = Command::new(script());
        cmd.arg("--stop").arg("--run-dir").arg(&self.run_dir).env("FREERADIUS", &self.binary);
        run_with_timeout(cmd, None, TOOL_TIMEOUT)
    }

    /// The whole log (FreeRADIUS runs with -xx: every packet is in it).
    fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.run_dir.join("radius.log")).unwrap_or_default()).into_owned()
    }

    fn log_tail(&self) -> String {
        format!("--- FreeRADIUS radius.log (last lines) ---\n{}", last_lines(&self.log(), 60))
    }

    /// Waits until the log, from byte `from` on, holds `needle`.
    fn wait_for_log(&self, from: usize, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().get(from..).is_some_and(|l| l.contains(needle)) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `radmin -f D/control.sock -e COMMAND`, if radmin is installed.
    fn radmin(&self, command: &str) -> Option<String> {
        let radmin =
            Some(self.binary.with_file_name("radmin")).filter(|p| p.is_file()).or_else(|| find_in_path("radmin"))?;
        let mut cmd = Command::new(radmin);
        cmd.arg("-f").arg(self.run_dir.join("control.sock")).args(["-e", command]);
        let out = run_with_timeout(cmd, None, TOOL_TIMEOUT);
        assert!(out.success(), "radmin {command}:\n{}", out.tail(10));
        Some(out.stdout.trim().to_owned())
    }

    /// The state radmin reports for the home server at `addr`.
    fn home_state(&self, addr: SocketAddr) -> Option<String> {
        self.radmin(&format!("show home_server state {} {}", addr.ip(), addr.port()))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        let _ = self.stop();
    }
}

fn both_tools() -> Option<(PathBuf, PathBuf)> {
    let binary = require_tool("freeradius", freeradius())?;
    let eapol = require_tool("eapol_test", eapol_test())?;
    Some((binary, eapol))
}

/// `eapay-terminal pay` through the proxy at `merchant`, the card played in
/// process, the receipt checked with the issuer key, then `extra`.
fn pay(server: &Server, proxy: &Proxy, card: &Card, merchant: &str, amount: &str, extra: &[&str]) -> ToolOutput {
    let issuer_key = server.data_dir.join("issuer.pub");
    let reversals = server.scratch("reversals.json");
    let mut args: Vec<String> = vec!["pay".into()];
    args.extend(["--server".into(), proxy.auth.to_string(), "--acct-server".into(), proxy.acct.to_string()]);
    args.extend(
        ["--secret", TERMINAL_SECRET, "--merchant", merchant, "--amount", amount, "--currency", "USD"]
            .map(String::from),
    );
    args.extend(["--card".into(), card.json.display().to_string()]);
    args.extend(["--issuer-key".into(), issuer_key.display().to_string()]);
    args.extend(["--reversals".into(), reversals.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    terminal(&args)
}

/// An approval through the proxy: exit 0, `APPROVED <amount> USD`, a
/// well-formed approval code, the receipt verified by the terminal, and the
/// ledger holding the same approval, confirmed by the card. Returns (code,
/// transaction id, receipt length in bytes).
fn assert_paid(
    server: &Server,
    proxy: &Proxy,
    out: &ToolOutput,
    merchant: &str,
    amount: &str,
    what: &str,
) -> (String, String, usize) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: not approved\n{}\n{}\n{}",
        out.all(),
        last_lines(&server.stderr(), 30),
        proxy.log_tail()
    );
    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with(&format!("APPROVED {amount} USD")), "{what}: first line {first:?}\n{}", out.all());
    let code = word_after(first, "code").unwrap_or_else(|| panic!("{what}: no approval code in {first:?}"));
    assert!(is_approval_code(&code), "{what}: approval code {code:?}");
    assert!(out.stdout.contains("receipt verified with issuer key"), "{what}: receipt not verified\n{}", out.all());
    let receipt = word_after(&out.stdout, "receipt").unwrap_or_else(|| panic!("{what}: no receipt\n{}", out.stdout));
    let txn =
        word_after(&out.stdout, "transaction").unwrap_or_else(|| panic!("{what}: no transaction\n{}", out.stdout));
    let shown = server.txn_show(merchant, &txn);
    let lower = shown.to_lowercase();
    assert!(
        has_token(&lower, "approved") && shown.contains(&code),
        "{what}: the ledger does not have {code}:\n{shown}"
    );
    assert!(has_token(&lower, "confirmed"), "{what}: the card confirmed inside EAP:\n{shown}");
    (code, txn, receipt.len() / 2)
}

/// The lines FreeRADIUS logged for the request that sent the Access-Accept
/// carrying `approval_code`, from that "Sent Access-Accept" on.
/// [`sent_accept_lines`] once FreeRADIUS has written them (its log reaches
/// the file after the reply has left), given `done` to tell a whole block;
/// what there is after a few seconds otherwise.
fn logged_accept_lines(proxy: &Proxy, approval_code: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let sent = sent_accept_lines(&proxy.log(), approval_code);
        if done(&sent) || Instant::now() > deadline {
            return sent;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sent_accept_lines(log: &str, approval_code: &str) -> Vec<String> {
    let needle = format!("Eapay-Approval-Code = \"{approval_code}\"");
    let lines: Vec<&str> = log.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if !line.contains("Sent Access-Accept") {
            continue;
        }
        let Some(prefix) = line.split_whitespace().next().filter(|p| p.starts_with('(')) else { continue };
        let block: Vec<String> = lines[i..]
            .iter()
            .take_while(|l| l.starts_with(prefix) && !l.contains("Finished request"))
            .map(|l| l.to_string())
            .collect();
        if block.iter().any(|l| l.contains(&needle)) {
            return block;
        }
    }
    Vec::new()
}

/// A merchant id and a transaction id of the longest kind (64 bytes): the
/// receipt no longer fits one Vendor-Specific and travels split.
fn long_id(prefix: &str) -> String {
    format!("{prefix}{}", "x".repeat(64 - prefix.len()))
}

/// AKA, AKA', TLS and TTLS cards that confirm pay through FreeRADIUS; one
/// payment with the longest ids has its receipt split in two attributes.
#[test]
fn terminal_payments_through_freeradius_are_approved_intact() {
    let Some(binary) = require_tool("freeradius", freeradius()) else { return };
    let started = Instant::now();
    let long_merchant = long_id("M-LONG-");
    let server = Server::start_prepared("issuer.test", "eapay-test-secret", |config| {
        let config = config.to_str().expect("utf-8");
        run_server_command(&[
            "merchant",
            "add",
            &long_merchant,
            "--name",
            "Long ids",
            "--client",
            "demo-terminal",
            "--config",
            config,
        ]);
    });
    let proxy = Proxy::start(&binary, &server, &server.scratch("freeradius-proxy"));
    let _capture = capture_both(&server, &proxy);
    for (name, want) in [("raddb/radiusd.conf", 0o600), ("raddb/proxy.conf", 0o600)] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(proxy.run_dir.join(name)).expect(name).permissions().mode() & 0o777;
        assert_eq!(mode, want, "{name} holds secrets");
    }

    let cards = [
        server.card_with(Method::Aka, &["--confirmation", "required"]),
        server.card_with(Method::AkaPrime, &["--confirmation", "required"]),
        server.card_with(Method::Tls, &["--confirmation", "required"]),
        server.card_with(Method::Ttls, &["--confirmation", "required", "--pin", "2468"]),
    ];
    for card in &cards {
        let what = format!("{:?} card {}", card.method, card.identity);
        let out = pay(&server, &proxy, card, MERCHANT, "12.50", &[]);
        let (code, _, _) = assert_paid(&server, &proxy, &out, MERCHANT, "12.50", &what);
        // It went through FreeRADIUS: the approval is in what it sent.
        let sent = logged_accept_lines(&proxy, &code, |sent| !sent.is_empty());
        assert!(!sent.is_empty(), "{what}: FreeRADIUS did not send approval {code}\n{}", proxy.log_tail());
    }

    // The longest ids: a 248-byte receipt, sent as two Eapay-Receipt
    // attributes (247 + 1), concatenated again by the terminal.
    let txn = long_id("T-LONG-");
    let out = pay(&server, &proxy, &cards[1], &long_merchant, "3.25", &["--transaction-id", &txn]);
    let (code, shown_txn, receipt_len) = assert_paid(&server, &proxy, &out, &long_merchant, "3.25", "split receipt");
    assert_eq!(shown_txn, txn);
    assert!(receipt_len > MAX_VENDOR_VALUE_LEN, "the receipt ({receipt_len} bytes) fits one attribute");
    let receipt_lines = |sent: &[String]| sent.iter().filter(|l| l.contains("Eapay-Receipt = 0x")).count();
    let sent = logged_accept_lines(&proxy, &code, |sent| receipt_lines(sent) >= 2);
    let receipts = receipt_lines(&sent);
    assert_eq!(receipts, 2, "FreeRADIUS should have sent the receipt as two attributes:\n{}", sent.join("\n"));
    server.assert_running();
    eprintln!("terminal payments through FreeRADIUS took {:?}", started.elapsed());
}

/// `eapol_test -a PROXY -p PORT -s SECRET -t 10 -c CONF -N (payment)`.
fn eapol_pay(tool: &Path, proxy: &Proxy, conf: &Path, payment: &PaymentDetails) -> ToolOutput {
    let mut cmd = Command::new(tool);
    cmd.args(["-a", "127.0.0.1", "-p", &proxy.auth.port().to_string(), "-s", TERMINAL_SECRET, "-t", "10", "-c"])
        .arg(conf)
        .args(eapol_test_payment_args(payment));
    run_with_timeout(cmd, None, TOOL_TIMEOUT)
}

/// The receipt in eapol_test's last Access-Accept, its parts concatenated.
fn eapol_receipt(out: &ToolOutput) -> Vec<u8> {
    let accepts = eapay_attributes_in(out, "Access-Accept");
    let last = accepts.last().expect("an Access-Accept");
    last.iter().filter(|(t, _)| *t == eapay::RECEIPT).flat_map(|(_, v)| v.clone()).collect()
}

/// eapol_test pays through FreeRADIUS (AKA and TLS `optional` cards); a
/// decline code arrives intact at eapol_test and at the terminal; a stored
/// reversal reaches the ledger through the proxy's accounting port.
#[test]
fn eapol_test_payments_declines_and_reversals_through_freeradius() {
    let Some((binary, eapol)) = both_tools() else { return };
    let started = Instant::now();
    let server = Server::start_default();
    let proxy = Proxy::start(&binary, &server, &server.scratch("freeradius-proxy"));
    let _capture = capture_both(&server, &proxy);

    for method in [Method::Aka, Method::Tls] {
        let card = server.card(method);
        let payment = details("eapol-proxy", 1250);
        let out = eapol_pay(&eapol, &proxy, &card.eapol_conf, &payment);
        // MPPE keys OK: FreeRADIUS re-encrypted MS-MPPE-*-Key with the
        // terminal's secret and request authenticator.
        assert_success(&out, &server, 1);
        let code = assert_approved(&server, &payment, &out);
        let receipt = eapol_receipt(&out);
        let body = server.issuer_key().verify(&receipt).unwrap_or_else(|e| panic!("{method:?}: receipt: {e}"));
        assert_eq!((body.approval_code.as_str(), body.amount), (code.as_str(), 1250), "{method:?}");
    }

    // Over the credit limit: 61 in eapol_test's Access-Reject, and in the ledger.
    let card = server.card(Method::Aka);
    let payment = details("eapol-limit", 1_000_000);
    let out = eapol_pay(&eapol, &proxy, &card.eapol_conf, &payment);
    assert!(!out.success() && out.stdout.contains("(Access-Reject)"), "{}", out.tail(40));
    assert_declined(&server, &payment, &out, DeclineCode::ExceedsLimit);

    // The terminal: 61 for the amount, 62 for a blocked card.
    let card = server.card_with(Method::AkaPrime, &["--confirmation", "required"]);
    let out = pay(&server, &proxy, &card, MERCHANT, "10000.00", &[]);
    assert_eq!(out.status.code(), Some(1), "declined exits 1:\n{}", out.all());
    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("DECLINED 61 Exceeds-Limit"), "first line {first:?}\n{}", out.all());
    let txn = word_after(&out.stdout, "transaction").expect("transaction id");
    assert!(has_token(&server.txn_show(MERCHANT, &txn).to_lowercase(), "declined"));

    let blocked = server.card_with(Method::Aka, &["--confirmation", "required"]);
    server.block(&blocked);
    let out = pay(&server, &proxy, &blocked, MERCHANT, "5.00", &[]);
    assert_eq!(out.status.code(), Some(1), "declined exits 1:\n{}", out.all());
    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("DECLINED 62 Restricted-Card"), "first line {first:?}\n{}", out.all());

    // A payment whose answer never came (a silent server) leaves a stored
    // reversal; `flush` delivers it through the proxy's accounting port:
    // an Accounting-Request with no User-Name, routed by its
    // Eapay-Settlement-Action.
    let reversals = server.scratch("silent-reversals.json");
    let silent = udp_socket("127.0.0.1:0");
    let mut args: Vec<String> = ["pay", "--server"].map(String::from).to_vec();
    args.push(silent.local_addr().expect("address").to_string());
    args.extend(
        ["--secret", TERMINAL_SECRET, "--merchant", MERCHANT, "--amount", "2.00", "--currency", "USD"]
            .map(String::from),
    );
    args.extend(["--transaction-id", "PROXY-REV-1", "--timeout", "100ms", "--retries", "0"].map(String::from));
    args.extend([
        "--card".into(),
        card.json.display().to_string(),
        "--reversals".into(),
        reversals.display().to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let lost = terminal(&args);
    assert_eq!(lost.status.code(), Some(2), "{}", lost.all());
    let flush_args = [
        "flush",
        "--server",
        &proxy.auth.to_string(),
        "--acct-server",
        &proxy.acct.to_string(),
        "--secret",
        TERMINAL_SECRET,
        "--reversals",
        reversals.to_str().expect("utf-8"),
    ]
    .map(String::from);
    let flush_args: Vec<&str> = flush_args.iter().map(String::as_str).collect();
    let flushed = terminal(&flush_args);
    assert_eq!(flushed.status.code(), Some(0), "{}\n{}", flushed.all(), proxy.log_tail());
    assert!(flushed.stdout.contains("reversal of PROXY-REV-1 delivered"), "{}", flushed.stdout);
    let shown = server.txn_show(MERCHANT, "PROXY-REV-1").to_lowercase();
    assert!(shown.contains("tombstone"), "the reversal reached the ledger:\n{shown}");
    server.assert_running();
    eprintln!("eapol_test, declines and reversals through FreeRADIUS took {:?}", started.elapsed());
}

/// Proxy-State values as an agency proxy (or two) would add them: text and binary.
fn proxy_states() -> Vec<Vec<u8>> {
    vec![b"agency-a:17".to_vec(), vec![0x00, 0xff, 0x10, 0x80], b"agency-b:4711".to_vec()]
}

/// A signed request with `proxy_states` appended; returns it with the
/// authenticator it went out with.
fn with_proxy_states(mut p: Packet, states: &[Vec<u8>], secret: &str) -> (Vec<u8>, [u8; 16]) {
    for s in states {
        p.push(rfc::PROXY_STATE, s).expect("Proxy-State");
    }
    let wire = encode_request(&p, secret.as_bytes()).expect("encode");
    let authenticator: [u8; 16] = wire[4..20].try_into().expect("authenticator");
    (wire, authenticator)
}

/// Sends `wire` (retransmitted as is, up to 3 times) and returns the reply,
/// verified strictly (Message-Authenticator first).
fn ask(to: SocketAddr, wire: &[u8], authenticator: &[u8; 16], request: Code, secret: &str, what: &str) -> Packet {
    let socket = udp_socket("127.0.0.1:0");
    let reply = (0..3)
        .find_map(|_| exchange(&socket, to, wire, REPLY_TIMEOUT / 3))
        .unwrap_or_else(|| panic!("{what}: no answer from {to}"));
    verify_reply(&reply, request, authenticator, secret)
}

fn echoed(p: &Packet) -> Vec<Vec<u8>> {
    p.get_all(rfc::PROXY_STATE).map(<[u8]>::to_vec).collect()
}

/// The first round of a card's EAP conversation (EAP-Response/Identity).
fn identity_round(identifier: u8, identity: &str) -> Packet {
    eap_access_request_packet(identifier, identity, &eap_identity_response(0, identity), None)
}

/// A reversal of an unknown transaction (the ledger keeps a tombstone).
fn reversal_request(transaction_id: &str) -> Packet {
    let mut p = Packet::new_request(Code::AccountingRequest, 0x42);
    p.add_message_authenticator();
    p.push_vendor_u32(VENDOR, eapay::SETTLEMENT_ACTION, SettlementAction::Reverse.value()).expect("action");
    p.push_vendor(VENDOR, eapay::TRANSACTION_ID, transaction_id.as_bytes()).expect("transaction id");
    p.push_vendor(VENDOR, eapay::MERCHANT_ID, MERCHANT.as_bytes()).expect("merchant id");
    p
}

/// RFC 2865 §5.33: eapay-server copies the Proxy-State attributes of a
/// request into its reply unchanged and in order (three reply kinds), and
/// behind FreeRADIUS the terminal gets its own back and none of FreeRADIUS's.
#[test]
fn proxy_state_is_echoed_unchanged_and_in_order() {
    let server = Server::start_default();
    let card = server.card(Method::Aka);
    let states = proxy_states();

    // Straight to eapay-server.
    let (wire, auth) = with_proxy_states(identity_round(1, &card.identity), &states, &server.secret);
    let reply = ask(server.auth, &wire, &auth, Code::AccessRequest, &server.secret, "EAP identity");
    assert_eq!(reply.code, Code::AccessChallenge, "{reply:?}");
    assert_eq!(echoed(&reply), states, "Access-Challenge: {reply:?}");

    let mut no_eap = Packet::new_request(Code::AccessRequest, 2);
    no_eap.add_message_authenticator();
    no_eap.push(rfc::USER_NAME, card.identity.as_bytes()).expect("User-Name");
    let (wire, auth) = with_proxy_states(no_eap, &states, &server.secret);
    let reply = ask(server.auth, &wire, &auth, Code::AccessRequest, &server.secret, "no EAP");
    assert_eq!(reply.code, Code::AccessReject, "{reply:?}");
    assert_eq!(echoed(&reply), states, "Access-Reject: {reply:?}");

    let (wire, auth) = with_proxy_states(reversal_request("PS-DIRECT-1"), &states, &server.secret);
    let reply = ask(server.acct, &wire, &auth, Code::AccountingRequest, &server.secret, "reversal");
    assert_eq!(reply.code, Code::AccountingResponse, "{reply:?}");
    assert_eq!(echoed(&reply), states, "Accounting-Response: {reply:?}");

    // Through FreeRADIUS, which adds its own Proxy-State toward eapay-server
    // and must strip it from what the terminal gets.
    let Some(binary) = require_tool("freeradius", freeradius()) else { return };
    let proxy = Proxy::start(&binary, &server, &server.scratch("freeradius-proxy"));
    let _capture = capture_both(&server, &proxy);
    let (wire, auth) = with_proxy_states(identity_round(3, &card.identity), &states, TERMINAL_SECRET);
    let reply = ask(proxy.auth, &wire, &auth, Code::AccessRequest, TERMINAL_SECRET, "EAP identity via FreeRADIUS");
    assert_eq!(reply.code, Code::AccessChallenge, "{reply:?}\n{}", proxy.log_tail());
    assert_eq!(echoed(&reply), states, "Access-Challenge via FreeRADIUS: {reply:?}");
    let log = proxy.log();
    assert!(log.contains("Received Access-Challenge") && log.contains("Proxy-State = 0x"), "{}", proxy.log_tail());

    let (wire, auth) = with_proxy_states(reversal_request("PS-PROXY-1"), &states, TERMINAL_SECRET);
    let reply = ask(proxy.acct, &wire, &auth, Code::AccountingRequest, TERMINAL_SECRET, "reversal via FreeRADIUS");
    assert_eq!(reply.code, Code::AccountingResponse, "{reply:?}\n{}", proxy.log_tail());
    assert_eq!(echoed(&reply), states, "Accounting-Response via FreeRADIUS: {reply:?}");
    assert!(server.txn_show(MERCHANT, "PS-PROXY-1").to_lowercase().contains("tombstone"));
    server.assert_running();
}

/// The request number of the first answered status check in `log`
/// ("(N) Received response to status check N ID ...").
fn status_check_number(log: &str) -> Option<String> {
    log.lines().find_map(|l| {
        let rest = l.split_once("Received response to status check ")?.1;
        rest.split_whitespace().next().map(str::to_owned)
    })
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().expect("run kill");
    assert!(status.success(), "kill -{sig} {pid}");
}

/// Sends one first-round Access-Request for the realm to the proxy and does
/// not wait for the answer (the home server is stopped).
fn poke(proxy: &Proxy, identity: &str) -> UdpSocket {
    let socket = udp_socket("127.0.0.1:0");
    let (wire, _) = with_proxy_states(identity_round(rand::random(), identity), &[], TERMINAL_SECRET);
    socket.send_to(&wire, proxy.auth).expect("send to the proxy");
    socket
}

/// Status-Server (RFC 5997) from FreeRADIUS: eapay-server stops answering
/// (SIGSTOP), a proxied request times out and FreeRADIUS marks it zombie and
/// sends a Status-Server; eapay-server resumes, answers it, and is marked
/// alive (a payment goes through again). Stopped again and left silent, it
/// is marked dead. eapay-server counted the Status-Servers it answered.
#[test]
fn status_server_from_freeradius_marks_eapay_server_alive_and_dead() {
    let Some(binary) = require_tool("freeradius", freeradius()) else { return };
    let started = Instant::now();
    let server = Server::start_default();
    let window = ["--response-window", "2"];
    let proxy = Proxy::start_with(&binary, &server, &server.scratch("freeradius-proxy"), &window);
    let _capture = capture_both(&server, &proxy);
    let card = server.card_with(Method::Aka, &["--confirmation", "required"]);
    let home = server.auth;
    let marked = |what: &str| format!("Marking home server {} port {} {what}", home.ip(), home.port());

    // A first payment: FreeRADIUS knows nothing of the home server until it answers.
    assert_eq!(proxy.home_state(home).as_deref().unwrap_or("unknown"), "unknown");
    let out = pay(&server, &proxy, &card, MERCHANT, "1.00", &[]);
    assert_paid(&server, &proxy, &out, MERCHANT, "1.00", "first payment");
    if let Some(state) = proxy.home_state(home) {
        assert_eq!(state, "alive");
    }

    // Silent: zombie after the 2 s response window, and a Status-Server.
    let mark = proxy.log().len();
    signal(server.pid(), "STOP");
    let _socket = poke(&proxy, &card.identity);
    let zombie = proxy.wait_for_log(mark, &marked("as zombie"), Duration::from_secs(8));
    let zombie_state = proxy.home_state(home);
    signal(server.pid(), "CONT");
    assert!(zombie, "FreeRADIUS did not mark the silent home server zombie\n{}", proxy.log_tail());
    if let Some(state) = zombie_state {
        assert_eq!(state, "zombie");
    }
    // Resumed: it answers the Status-Server, and that answer (not the late
    // one to the request, which FreeRADIUS had given up) makes it alive.
    let answered = proxy.wait_for_log(mark, "Received response to status check", Duration::from_secs(8));
    assert!(answered, "no answer to FreeRADIUS's Status-Server\n{}", proxy.log_tail());
    assert!(proxy.wait_for_log(mark, &marked("alive"), Duration::from_secs(2)), "{}", proxy.log_tail());
    let log = proxy.log()[mark..].to_owned();
    let check = status_check_number(&log).unwrap_or_else(|| panic!("no status check answered\n{}", proxy.log_tail()));
    for what in [format!("({check}) Sent Status-Server"), format!("({check}) {}", marked("alive"))] {
        assert!(log.lines().any(|l| l.starts_with(&what)), "no `{what}` line\n{}", proxy.log_tail());
    }
    if let Some(state) = proxy.home_state(home) {
        assert_eq!(state, "alive");
    }
    let out = pay(&server, &proxy, &card, MERCHANT, "1.00", &[]);
    assert_paid(&server, &proxy, &out, MERCHANT, "1.00", "payment after the home server came back");

    // Silent for good: zombie, the Status-Server unanswered, then dead once
    // zombie_period (2 s) is over at the next check.
    let mark = proxy.log().len();
    signal(server.pid(), "STOP");
    let _socket = poke(&proxy, &card.identity);
    let dead = proxy.wait_for_log(mark, &marked("as dead"), Duration::from_secs(16));
    let dead_state = proxy.home_state(home);
    // With its only home server dead, FreeRADIUS answers at once with an
    // Access-Reject of its own that carries nothing, not even a
    // Message-Authenticator: the terminal drops it, and since the payment
    // attributes went out, stores a reversal (the payment is in doubt).
    let in_doubt =
        dead.then(|| pay(&server, &proxy, &card, MERCHANT, "1.00", &["--timeout", "300ms", "--retries", "1"]));
    signal(server.pid(), "CONT");
    assert!(dead, "FreeRADIUS did not mark the silent home server dead\n{}", proxy.log_tail());
    assert!(proxy.log()[mark..].contains("No response to status check"), "{}", proxy.log_tail());
    if let Some(state) = dead_state {
        assert_eq!(state, "dead");
    }
    let in_doubt = in_doubt.expect("paid while dead");
    assert_eq!(in_doubt.status.code(), Some(2), "{}", in_doubt.all());
    let error = error_lines(&in_doubt).join("\n");
    assert!(
        error.contains("without Message-Authenticator") && error.contains("reversal of") && error.contains("stored"),
        "{error}\n{}",
        in_doubt.all()
    );

    let stopped = server.terminate();
    assert!(
        stopped_counter(&stopped, "status_server") >= 1,
        "eapay-server counted no Status-Server:\n{}",
        last_lines(&stopped, 5)
    );
    eprintln!("Status-Server through FreeRADIUS took {:?}", started.elapsed());
}

/// The script's usage errors: one line on stderr, exit 2, nothing started.
#[test]
fn freeradius_proxy_script_usage_errors_are_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    let run = run.to_str().expect("utf-8");
    let base = [
        "--home",
        "127.0.0.1:1812",
        "--home-secret",
        "h",
        "--realm",
        "issuer.test",
        "--port",
        "18120",
        "--secret",
        "s",
    ];
    let with = |i: usize, value: &str| {
        let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        args[i] = value.to_owned();
        args
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![], "--home HOST:PORT is required"),
        (with(1, "localhost"), "--home must be HOST:PORT"),
        (with(1, "127.0.0.1:0"), "--home: port must be 1..65535"),
        (with(3, ""), "--home-secret is required"),
        (with(5, "bad realm"), "--realm must be a domain name"),
        (with(7, "70000"), "--port must be 1..65535"),
        (with(9, "it's"), "secrets must not contain"),
        (
            [&base[..], &["--acct-port", "18120"]].concat().iter().map(|s| s.to_string()).collect(),
            "--acct-port must differ",
        ),
        (
            [&base[..], &["--home-acct", "nope"]].concat().iter().map(|s| s.to_string()).collect(),
            "--home-acct must be HOST:PORT",
        ),
        ([&base[..], &["--bogus"]].concat().iter().map(|s| s.to_string()).collect(), "unknown argument '--bogus'"),
    ];
    for (mut args, want) in cases {
        args.extend(["--run-dir".to_owned(), run.to_owned()]);
        let mut cmd = Command::new(script());
        cmd.args(&args);
        let out = run_with_timeout(cmd, None, TOOL_TIMEOUT);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert!(
            out.status.code() == Some(2) && lines.len() == 1 && lines[0].contains(want) && out.stdout.is_empty(),
            "{args:?}: want exit 2 and one line with {want:?}:\n{}",
            out.tail(5)
        );
    }
    assert!(!Path::new(run).exists(), "a refused start created its run dir");
    let mut cmd = Command::new(script());
    cmd.arg("--stop");
    let out = run_with_timeout(cmd, None, TOOL_TIMEOUT);
    assert!(out.status.code() == Some(2) && out.stderr.contains("--stop needs --run-dir"), "{}", out.tail(5));
}
