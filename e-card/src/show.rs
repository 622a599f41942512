//! The card's words: payment details, results and outcomes as one line of
//! text for the holder (`eapay-card` prints them, the tty holder asks with
//! them, the display check logs them).

use aaa_proto::currency::{by_numeric, format_amount};
use aaa_proto::dictionary::eapay::DeclineCode;
use aaa_proto::payment::{PaymentDetails, PaymentOutcome, PaymentResult};

use crate::session::{CardOutcome, CardReport};

/// An amount in its currency, `12.50 USD`; a currency the card does not
/// know is shown by number, `1250 minor units of currency 999`.
pub fn amount(minor: u64, currency: u32) -> String {
    match by_numeric(currency) {
        Some(c) => format_amount(minor, c),
        None => format!("{minor} minor units of currency {currency}"),
    }
}

/// `12.50 USD to M-DEMO, transaction T-1` (and `, in 3 installments`).
pub fn details(d: &PaymentDetails) -> String {
    let mut text = format!("{} to {}, transaction {}", amount(d.amount, d.currency), d.merchant_id, d.transaction_id);
    if d.installments > 0 {
        text.push_str(&format!(", in {} installments", d.installments));
    }
    text
}

/// `DECLINED 51 (Insufficient-Funds)`.
pub fn decline(code: u32) -> String {
    match DeclineCode::from_value(code) {
        Some(known) => format!("DECLINED {code:02} ({})", known.name()),
        None => format!("DECLINED {code:02}"),
    }
}

/// `APPROVED 12.50 USD, approval code ABC123` or `DECLINED 51 (...)`;
/// `currency` is that of the payment, if the card knows it.
pub fn result(r: &PaymentResult, currency: Option<u32>) -> String {
    match &r.outcome {
        PaymentOutcome::Approved { approval_code, approved_amount } => {
            let sum = match currency {
                Some(c) => amount(*approved_amount, c),
                None => format!("{approved_amount} minor units"),
            };
            format!("APPROVED {sum}, approval code {approval_code}")
        }
        PaymentOutcome::Declined { code } => decline(*code),
    }
}

/// What the card got, in the words of [`result`]; `None` for a refusal.
pub fn outcome(o: &CardOutcome, currency: Option<u32>) -> Option<String> {
    Some(match o {
        CardOutcome::Approved { approval_code, approved_amount } => {
            let r = PaymentResult {
                transaction_id: String::new(),
                outcome: PaymentOutcome::Approved {
                    approval_code: approval_code.clone(),
                    approved_amount: *approved_amount,
                },
            };
            format!("issuer {}", result(&r, currency))
        }
        CardOutcome::Declined { code } => format!("issuer {}", decline(*code)),
        CardOutcome::Authenticated => "authenticated by the issuer, no payment result".to_string(),
        CardOutcome::Failed(why) => format!("payment failed: {why}"),
        CardOutcome::Refused => return None,
    })
}

/// The line `eapay-card` prints after a payment: what the card got and
/// whether the terminal displays the same; `None` for a refusal.
pub fn report(r: &CardReport) -> Option<String> {
    let currency = r.details.as_ref().map(|d| d.currency);
    let got = outcome(&r.outcome, currency)?;
    let terminal = match (&r.terminal_showed, r.display_agrees) {
        (Some(_), Some(true)) => "terminal displays the same".to_string(),
        (Some(shown), Some(false)) => format!("but the terminal displays {}", result(shown, currency)),
        // Nothing to compare with (a failure without a protected result).
        (Some(shown), None) => format!("terminal displays {}", result(shown, currency)),
        (None, Some(false)) => "but the terminal's display is unreadable".to_string(),
        (None, _) if r.details.is_some() => "the terminal did not say what it displays".to_string(),
        (None, _) => return Some(got),
    };
    Some(format!("{got}; {terminal}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> PaymentDetails {
        PaymentDetails {
            transaction_id: "T-1".into(),
            merchant_id: "M-DEMO".into(),
            amount: 1250,
            currency: 840,
            installments: 0,
            terminal_nonce: [0; 16],
            terminal_time_ms: 0,
        }
    }

    #[test]
    fn details_and_results_read_like_a_receipt() {
        assert_eq!(details(&d()), "12.50 USD to M-DEMO, transaction T-1");
        assert_eq!(
            details(&PaymentDetails { installments: 3, ..d() }),
            "12.50 USD to M-DEMO, transaction T-1, in 3 installments"
        );
        assert_eq!(amount(7, 999), "7 minor units of currency 999");
        assert_eq!(decline(51), "DECLINED 51 (Insufficient-Funds)");
        assert_eq!(decline(5), "DECLINED 05 (Do-Not-Honor)");
        assert_eq!(decline(1), "DECLINED 01");
        let approved = CardReport {
            details: Some(d()),
            consented: true,
            outcome: CardOutcome::Approved { approval_code: "ABC123".into(), approved_amount: 1250 },
            terminal_showed: None,
            display_agrees: None,
        };
        assert_eq!(
            report(&approved).unwrap(),
            "issuer APPROVED 12.50 USD, approval code ABC123; the terminal did not say what it displays"
        );
        let shown = PaymentResult { transaction_id: "T-1".into(), outcome: PaymentOutcome::Declined { code: 5 } };
        let lying = CardReport { terminal_showed: Some(shown), display_agrees: Some(false), ..approved };
        assert_eq!(
            report(&lying).unwrap(),
            "issuer APPROVED 12.50 USD, approval code ABC123; but the terminal displays DECLINED 05 (Do-Not-Honor)"
        );
    }
}
