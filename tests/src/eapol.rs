//! Running eapol_test (wpa_supplicant's EAP peer) against the server under
//! test and reading what it printed: its verdict, the MPPE key check, and the
//! Eapay attributes of the RADIUS messages it dumps.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use aaa_proto::dictionary::eapay::{self, CardConfirmation, DeclineCode};
use aaa_proto::payment::{is_approval_code, PaymentDetails};

use crate::{
    approval_code_in, eapol_test_payment_args, has_token, run_with_timeout, Server, ToolOutput, MERCHANT, TOOL_TIMEOUT,
};

/// Runs `eapol_test -a 127.0.0.1 -p AUTH -s SECRET -t 10 -c CONF -N (payment) EXTRA...`.
pub fn run_payment(tool: &Path, server: &Server, conf: &Path, payment: &PaymentDetails, extra: &[&str]) -> ToolOutput {
    let mut args = eapol_test_payment_args(payment);
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_eapol_test(tool, server, conf, &args)
}

/// Runs `eapol_test -a 127.0.0.1 -p AUTH -s SECRET -t 10 -c CONF EXTRA...`.
pub fn run_eapol_test(tool: &Path, server: &Server, conf: &Path, extra: &[&str]) -> ToolOutput {
    run_eapol_test_at(tool, server.auth, &server.secret, conf, extra)
}

/// [`run_payment`] through a proxy at `to` that has `secret` for 127.0.0.1.
pub fn run_payment_at(
    tool: &Path,
    to: SocketAddr,
    secret: &str,
    conf: &Path,
    payment: &PaymentDetails,
    extra: &[&str],
) -> ToolOutput {
    let mut args = eapol_test_payment_args(payment);
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_eapol_test_at(tool, to, secret, conf, &args)
}

/// Runs `eapol_test -a ADDR -p PORT -s SECRET -t 10 -c CONF EXTRA...`.
pub fn run_eapol_test_at(tool: &Path, to: SocketAddr, secret: &str, conf: &Path, extra: &[&str]) -> ToolOutput {
    let mut cmd = Command::new(tool);
    cmd.arg("-a")
        .arg(to.ip().to_string())
        .arg("-p")
        .arg(to.port().to_string())
        .arg("-s")
        .arg(secret)
        .arg("-t")
        .arg("10")
        .arg("-c")
        .arg(conf)
        .args(extra);
    run_with_timeout(cmd, None, TOOL_TIMEOUT)
}

pub fn has_line(out: &ToolOutput, line: &str) -> bool {
    out.stdout.lines().any(|l| l.trim_end() == line)
}

pub fn count(out: &ToolOutput, needle: &str) -> usize {
    out.stdout.matches(needle).count()
}

/// Exit 0, a final `SUCCESS`, and `mppe_ok` matching key comparisons.
pub fn assert_success(out: &ToolOutput, server: &Server, mppe_ok: usize) {
    let keys = format!("MPPE keys OK: {mppe_ok}  mismatch: 0");
    assert!(
        out.success() && has_line(out, "SUCCESS") && out.stdout.contains(&keys),
        "eapol_test did not succeed (want exit 0, `SUCCESS`, `{keys}`)\n{}\n--- server stderr ---\n{}",
        out.tail(60),
        server.stderr()
    );
}

/// The Eapay sub-attributes (type, value) of each RADIUS message of `code`
/// ("Access-Accept", "Access-Reject") in eapol_test's dump, in order:
///
/// ```text
/// RADIUS message: code=2 (Access-Accept) identifier=1 length=399
///    Attribute 26 (Vendor-Specific) length=14
///       Value: 00007ed90808455242453535
/// ```
pub fn eapay_attributes_in(out: &ToolOutput, code: &str) -> Vec<Vec<(u8, Vec<u8>)>> {
    let vendor = format!("{:08x}", eapay::VENDOR_ID);
    let mut messages = Vec::new();
    let mut lines = out.stdout.lines().peekable();
    while let Some(line) = lines.next() {
        if !(line.starts_with("RADIUS message: ") && line.contains(&format!("({code})"))) {
            continue;
        }
        let mut attributes = Vec::new();
        let mut in_vsa = false;
        while let Some(next) = lines.peek() {
            let t = next.trim_start();
            if !next.starts_with(' ') || !(t.starts_with("Attribute ") || t.starts_with("Value: ")) {
                break;
            }
            if t.starts_with("Attribute ") {
                in_vsa = t.starts_with("Attribute 26 ");
            } else if let Some(hex) = t.strip_prefix("Value: ").filter(|h| in_vsa && h.starts_with(&vendor)) {
                let bytes: Vec<u8> = (8..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex in eapol_test's dump"))
                    .collect();
                if let [vendor_type, len, value @ ..] = bytes.as_slice() {
                    assert_eq!(usize::from(*len), value.len() + 2, "sub-attribute length in {t}");
                    attributes.push((*vendor_type, value.to_vec()));
                }
            }
            lines.next();
        }
        messages.push(attributes);
    }
    messages
}

pub fn value_of(attributes: &[(u8, Vec<u8>)], vendor_type: u8) -> Option<&[u8]> {
    attributes.iter().find(|(t, _)| *t == vendor_type).map(|(_, v)| v.as_slice())
}

pub fn u32_of(attributes: &[(u8, Vec<u8>)], vendor_type: u8) -> Option<u32> {
    value_of(attributes, vendor_type).map(|v| u32::from_be_bytes(v.try_into().expect("an integer is 4 bytes")))
}

/// The approval eapol_test received for `payment` (its last Access-Accept)
/// is the one in the ledger, Not-Confirmed, for the payment's amount;
/// returns the approval code.
pub fn assert_approved(server: &Server, payment: &PaymentDetails, out: &ToolOutput) -> String {
    let accepts = eapay_attributes_in(out, "Access-Accept");
    let last = accepts.last().unwrap_or_else(|| panic!("no Access-Accept in eapol_test's dump:\n{}", out.tail(60)));
    let code = value_of(last, eapay::APPROVAL_CODE)
        .map(|v| String::from_utf8(v.to_vec()).expect("approval code is text"))
        .unwrap_or_else(|| panic!("Access-Accept without Eapay-Approval-Code: {last:?}"));
    assert!(is_approval_code(&code), "approval code {code:?}");
    assert_eq!(value_of(last, eapay::TRANSACTION_ID), Some(payment.transaction_id.as_bytes()), "{last:?}");
    assert_eq!(value_of(last, eapay::APPROVED_AMOUNT), Some(&payment.amount.to_be_bytes()[..]), "{last:?}");
    assert_eq!(u32_of(last, eapay::CARD_CONFIRMATION), Some(CardConfirmation::NotConfirmed.value()), "{last:?}");
    let text = server.txn_show(MERCHANT, &payment.transaction_id);
    assert!(
        has_token(&text, "approved") && approval_code_in(&text).as_deref() == Some(code.as_str()),
        "the ledger does not have approval {code} for {}:\n{text}",
        payment.transaction_id
    );
    code
}

/// eapol_test's last Access-Reject carries Eapay-Decline-Code `code`, and the
/// ledger recorded the decline.
pub fn assert_declined(server: &Server, payment: &PaymentDetails, out: &ToolOutput, code: DeclineCode) {
    let rejects = eapay_attributes_in(out, "Access-Reject");
    let last = rejects.last().unwrap_or_else(|| panic!("no Access-Reject in eapol_test's dump:\n{}", out.tail(60)));
    assert_eq!(u32_of(last, eapay::DECLINE_CODE), Some(code.value()), "Eapay-Decline-Code: {last:?}");
    assert!(value_of(last, eapay::APPROVAL_CODE).is_none(), "{last:?}");
    let text = server.txn_show(MERCHANT, &payment.transaction_id);
    assert!(
        has_token(&text, "declined") && has_token(&text, &code.value().to_string()),
        "the ledger does not have decline {} for {}:\n{text}",
        code.value(),
        payment.transaction_id
    );
}
