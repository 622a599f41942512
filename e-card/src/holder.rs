//! The person holding the card, who accepts or refuses each payment the
//! terminal asks the card to confirm (DESIGN.md §1 step 1).

use std::io::{BufRead, Write};

use aaa_proto::currency::by_numeric;
use aaa_proto::payment::PaymentDetails;

use crate::show;

// The card side of a session, reachable from here too (the path first
// announced for it); the crate root re-exports the same items.
pub use crate::card::Card;
pub use crate::error::CardError;
pub use crate::session::{serve_link, serve_one, CardOutcome, CardReport};

/// The holder's decision on the payment details the card shows.
pub trait Holder: Send {
    /// True if the holder accepts this payment.
    fn consent(&mut self, details: &PaymentDetails) -> bool;
}

/// Accepts everything: demos, tests and the load generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct AutoAccept;

impl Holder for AutoAccept {
    fn consent(&mut self, _: &PaymentDetails) -> bool {
        true
    }
}

/// Refuses everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Refuse;

impl Holder for Refuse {
    fn consent(&mut self, _: &PaymentDetails) -> bool {
        false
    }
}

impl<H: Holder + ?Sized> Holder for Box<H> {
    fn consent(&mut self, details: &PaymentDetails) -> bool {
        (**self).consent(details)
    }
}

/// A spending limit in front of another holder: anything above `max`, or
/// in a currency the card cannot weigh, is refused without asking.
#[derive(Debug, Clone)]
pub struct AmountLimit<H> {
    max: DecimalLimit,
    inner: H,
}

impl<H: Holder> AmountLimit<H> {
    /// `max` is a plain decimal, e.g. `100.00`, read in the currency of each
    /// payment (100.00 USD, 100.00 EUR, 100 KRW...).
    pub fn new(max: &str, inner: H) -> Result<Self, String> {
        Ok(Self { max: DecimalLimit::parse(max)?, inner })
    }
}

impl<H: Holder> Holder for AmountLimit<H> {
    fn consent(&mut self, details: &PaymentDetails) -> bool {
        let Some(currency) = by_numeric(details.currency) else {
            tracing::info!("refused: currency {} is unknown to the card, the limit cannot apply", details.currency);
            return false;
        };
        if !self.max.allows(details.amount, currency.minor_units) {
            tracing::info!(
                "refused: {} is over the card's limit of {} {}",
                show::amount(details.amount, details.currency),
                self.max.text,
                currency.alpha
            );
            return false;
        }
        self.inner.consent(details)
    }
}

/// An exact decimal: `digits / 10^scale`.
#[derive(Debug, Clone)]
struct DecimalLimit {
    digits: u128,
    scale: u32,
    text: String,
}

impl DecimalLimit {
    fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not an amount like 100 or 100.00");
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits_only(int) || !digits_only(frac) || (text.contains('.') && frac.is_empty()) {
            return Err(bad());
        }
        if int.len() > 15 || frac.len() > 4 {
            return Err(format!("{text:?}: at most 15 digits before the point and 4 after"));
        }
        let digits = format!("{int}{frac}").parse::<u128>().map_err(|_| bad())?;
        Ok(Self { digits, scale: frac.len() as u32, text: text.to_string() })
    }

    /// `minor / 10^minor_units <= digits / 10^scale`, in integers.
    fn allows(&self, minor: u64, minor_units: u8) -> bool {
        let lhs = u128::from(minor).saturating_mul(10u128.pow(self.scale));
        let rhs = self.digits.saturating_mul(10u128.pow(u32::from(minor_units)));
        lhs <= rhs
    }
}

/// Asks on a terminal: shows the details, reads `y`/`yes` (anything else,
/// or end of input, is a refusal).
pub struct Ask<R, W> {
    input: R,
    output: W,
}

impl<R: BufRead + Send, W: Write + Send> Ask<R, W> {
    /// Asks on `output`, reads answers from `input`.
    pub fn new(input: R, output: W) -> Self {
        Self { input, output }
    }

    fn ask(&mut self, details: &PaymentDetails) -> bool {
        if write!(self.output, "confirm {}? [y/N] ", show::details(details)).and_then(|_| self.output.flush()).is_err()
        {
            return false;
        }
        let mut line = String::new();
        match self.input.read_line(&mut line) {
            Ok(0) | Err(_) => false,
            Ok(_) => matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
        }
    }
}

impl Ask<std::io::BufReader<std::fs::File>, std::fs::File> {
    /// Asks on the controlling terminal (`/dev/tty`), whatever stdin and
    /// stdout are.
    pub fn tty() -> std::io::Result<Self> {
        let input = std::fs::File::open("/dev/tty")?;
        let output = std::fs::OpenOptions::new().write(true).open("/dev/tty")?;
        Ok(Self::new(std::io::BufReader::new(input), output))
    }
}

impl<R: BufRead + Send, W: Write + Send> Holder for Ask<R, W> {
    fn consent(&mut self, details: &PaymentDetails) -> bool {
        // The holder takes their time: on a multi-threaded runtime, let the
        // other tasks (signals) run meanwhile.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| self.ask(details)),
            _ => self.ask(details),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pay(amount: u64, currency: u32) -> PaymentDetails {
        PaymentDetails {
            transaction_id: "T".into(),
            merchant_id: "M".into(),
            amount,
            currency,
            installments: 0,
            terminal_nonce: [0; 16],
            terminal_time_ms: 0,
        }
    }

    #[test]
    fn amount_limit_compares_exactly_in_each_currency() {
        let mut h = AmountLimit::new("100.00", AutoAccept).unwrap();
        assert!(h.consent(&pay(10_000, 840))); // 100.00 USD
        assert!(!h.consent(&pay(10_001, 840)));
        assert!(h.consent(&pay(100, 410))); // 100 KRW
        assert!(!h.consent(&pay(101, 410)));
        assert!(h.consent(&pay(100_000, 48))); // 100.000 BHD
        assert!(!h.consent(&pay(100_001, 48)));
        assert!(!h.consent(&pay(1, 999)), "unknown currency");
        assert!(!h.consent(&pay(u64::MAX, 840)));
        let mut refusing = AmountLimit::new("5", Refuse).unwrap();
        assert!(!refusing.consent(&pay(1, 840)));
        for bad in ["", ".5", "5.", "-1", "1e3", "1,00", "1.00000", "1234567890123456"] {
            assert!(AmountLimit::new(bad, AutoAccept).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ask_reads_yes_and_refuses_anything_else() {
        let mut h = Ask::new(&b"y\nno\nYES\n"[..], Vec::new());
        assert!(h.consent(&pay(1250, 840)));
        assert!(!h.consent(&pay(1250, 840)));
        assert!(h.consent(&pay(1250, 840)));
        assert!(!h.consent(&pay(1250, 840)), "end of input");
        let prompt = String::from_utf8(h.output).unwrap();
        assert!(prompt.starts_with("confirm 12.50 USD to M, transaction T? [y/N] "), "{prompt}");
    }
}
