//! eapol_test (wpa_supplicant's EAP peer with the Milenage USIM simulator)
//! against eapay-server: EAP-AKA (RFC 4187) and EAP-AKA' (RFC 5448/9048)
//! over RADIUS (RFC 3579).
//!
//! eapol_test prints `SUCCESS` and exits 0 only if it got an Access-Accept,
//! its own EAP state machine reached success, and the MSK it derived equals
//! the MS-MPPE-Recv/Send-Key the server sent ("MPPE keys OK: 1  mismatch: 0").

use std::path::Path;
use std::process::Command;

use eapay_tests::{
    eapol_test, read_usim_password, require_tool, run_with_timeout, write_usim_password, Card, Method, Server,
    ToolOutput, TOOL_TIMEOUT,
};

/// Runs `eapol_test -a 127.0.0.1 -p AUTH -s SECRET -t 10 -c CONF EXTRA...`.
fn run_eapol_test(tool: &Path, server: &Server, conf: &Path, extra: &[&str]) -> ToolOutput {
    let mut cmd = Command::new(tool);
    cmd.arg("-a")
        .arg(server.auth.ip().to_string())
        .arg("-p")
        .arg(server.auth.port().to_string())
        .arg("-s")
        .arg(&server.secret)
        .arg("-t")
        .arg("10")
        .arg("-c")
        .arg(conf)
        .args(extra);
    run_with_timeout(cmd, None, TOOL_TIMEOUT)
}

fn has_line(out: &ToolOutput, line: &str) -> bool {
    out.stdout.lines().any(|l| l.trim_end() == line)
}

fn count(out: &ToolOutput, needle: &str) -> usize {
    out.stdout.matches(needle).count()
}

/// Exit 0, a final `SUCCESS`, and `mppe_ok` matching key comparisons.
fn assert_success(out: &ToolOutput, server: &Server, mppe_ok: usize) {
    let keys = format!("MPPE keys OK: {mppe_ok}  mismatch: 0");
    assert!(
        out.success() && has_line(out, "SUCCESS") && out.stdout.contains(&keys),
        "eapol_test did not succeed (want exit 0, `SUCCESS`, `{keys}`)\n{}\n--- server stderr ---\n{}",
        out.tail(60),
        server.stderr()
    );
}

fn setup(method: Method) -> Option<(std::path::PathBuf, Server, Card)> {
    let tool = require_tool("eapol_test", eapol_test())?;
    let server = Server::start_default();
    let card = server.card(method);
    Some((tool, server, card))
}

fn full_authentication(method: Method) {
    let Some((tool, server, card)) = setup(method) else { return };
    let out = run_eapol_test(&tool, &server, &card.eapol_conf, &[]);
    assert_success(&out, &server, 1);
    // The identity eapol_test presented is the card's permanent NAI, and the
    // server answered with an Access-Accept (not a timeout or a local decision).
    assert!(out.stdout.contains("(Access-Accept)"), "no Access-Accept seen:\n{}", out.tail(60));
    let prefix = if method == Method::Aka { '0' } else { '6' };
    assert!(
        card.identity.starts_with(prefix) && card.identity.ends_with(&format!("@{}", server.realm)),
        "card identity {:?} is not a {method:?} permanent NAI of realm {}",
        card.identity,
        server.realm
    );
    server.assert_running();
}

#[test]
fn aka_full_authentication() {
    full_authentication(Method::Aka);
}

#[test]
fn aka_prime_full_authentication() {
    full_authentication(Method::AkaPrime);
}

/// A card whose K differs from the issuer's: the USIM finds the AUTN MAC
/// wrong (TS 33.102 §6.3.3), answers AKA-Authentication-Reject (RFC 4187
/// §9.5), and the server must end with EAP-Failure in an Access-Reject.
fn wrong_k(method: Method) {
    let Some((tool, server, card)) = setup(method) else { return };
    let mut pw = read_usim_password(&card.eapol_conf);
    let first = pw.k.chars().next().expect("K is not empty");
    let flipped = if first == '0' { '1' } else { '0' };
    pw.k.replace_range(0..1, &flipped.to_string());
    let conf = server.scratch("wrong-k.conf");
    write_usim_password(&card.eapol_conf, &conf, &pw);

    let out = run_eapol_test(&tool, &server, &conf, &[]);
    assert!(!has_line(&out, "SUCCESS") && !out.success(), "authentication with a wrong K succeeded:\n{}", out.tail(60));
    assert!(has_line(&out, "FAILURE"), "{}", out.tail(60));
    assert!(
        out.stdout.contains("Generating EAP-AKA Authentication-Reject"),
        "the peer did not reject the network (was the challenge even sent?):\n{}",
        out.tail(60)
    );
    assert!(
        out.stdout.contains("(Access-Reject)"),
        "the server did not answer the Authentication-Reject with an Access-Reject:\n{}\n--- server stderr ---\n{}",
        out.tail(60),
        server.stderr()
    );
    assert!(!out.stdout.contains("(Access-Accept)"), "{}", out.tail(60));
    server.assert_running();
}

#[test]
fn aka_wrong_k_is_rejected() {
    wrong_k(Method::Aka);
}

#[test]
fn aka_prime_wrong_k_is_rejected() {
    wrong_k(Method::AkaPrime);
}

/// The USIM's SQN is ahead of the issuer's: the peer answers the first
/// challenge with AKA-Synchronization-Failure (AT_AUTS), the server resyncs
/// (RFC 4187 §6.2 / TS 33.102 §6.3.5) and the same conversation succeeds.
/// A second run from the same (unchanged) SQN succeeds without resync,
/// because the server's SQN is now ahead of it.
fn sqn_resync(method: Method) {
    let Some((tool, server, card)) = setup(method) else { return };
    let mut pw = read_usim_password(&card.eapol_conf);
    pw.sqn = "000000001000".to_owned();
    let conf = server.scratch("sqn-ahead.conf");
    write_usim_password(&card.eapol_conf, &conf, &pw);
    const SYNC_FAILURE: &str = "Generating EAP-AKA Synchronization-Failure";

    let first = run_eapol_test(&tool, &server, &conf, &[]);
    assert!(
        first.stdout.contains(SYNC_FAILURE),
        "the peer with SQN 0x1000 did not send AT_AUTS (server SQN already ahead?):\n{}",
        first.tail(60)
    );
    assert_success(&first, &server, 1);

    let second = run_eapol_test(&tool, &server, &conf, &[]);
    assert_success(&second, &server, 1);
    assert!(
        !second.stdout.contains(SYNC_FAILURE),
        "after resynchronisation the server's SQN should be ahead of the card's, but a second resync happened:\n{}",
        second.tail(60)
    );
    server.assert_running();
}

#[test]
fn aka_sqn_resynchronisation() {
    sqn_resync(Method::Aka);
}

#[test]
fn aka_prime_sqn_resynchronisation() {
    sqn_resync(Method::AkaPrime);
}

/// `-r 1`: after the first success, eapol_test authenticates again over the
/// same RADIUS client (fast re-authentication if the server offered a
/// re-authentication identity, else a full one). Both must succeed with
/// matching keys.
fn reauthentication(method: Method) {
    let Some((tool, server, card)) = setup(method) else { return };
    let out = run_eapol_test(&tool, &server, &card.eapol_conf, &["-r", "1"]);
    assert_success(&out, &server, 2);
    assert!(count(&out, "(Access-Accept)") >= 2, "expected two Access-Accepts:\n{}", out.tail(60));
    server.assert_running();
}

#[test]
fn aka_reauthentication() {
    reauthentication(Method::Aka);
}

#[test]
fn aka_prime_reauthentication() {
    reauthentication(Method::AkaPrime);
}

/// An eapay Vendor-Specific attribute (vendor 32473 = 0x00007ed9, type 1
/// Eapay-Transaction-Id, a string) in every Access-Request must not disturb
/// plain authentication.
#[test]
fn payment_attributes_are_tolerated() {
    let Some((tool, server, card)) = setup(Method::Aka) else { return };
    let txn = b"txn-0001";
    let mut vsa = String::from("00007ed9");
    vsa.push_str(&format!("01{:02x}", txn.len() + 2));
    vsa.extend(txn.iter().map(|b| format!("{b:02x}")));
    let out = run_eapol_test(&tool, &server, &card.eapol_conf, &["-N", &format!("26:x:{vsa}")]);
    assert_success(&out, &server, 1);
    // eapol_test's message dump shows the VSA went out (6 + 2 + 8 octets).
    let sent = format!("Attribute 26 (Vendor-Specific) length={}", 2 + vsa.len() / 2);
    assert!(out.stdout.contains(&sent), "eapol_test did not send the VSA (`{sent}`):\n{}", out.tail(60));
    server.assert_running();
}
