//! The payment decision proper (contract step 3), as a pure function over a
//! snapshot of the card, what the ledger remembers about the merchant's
//! nonces and the card's recent approvals, and the policy. The database
//! parts (permission, duplicates, recording) are in `authorizations.rs`.

use aaa_proto::dictionary::eapay::DeclineCode;
use aaa_proto::payment::PaymentDetails;

use super::model::{CardStatus, Decline, PaymentPolicy};

/// The card as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardSnapshot {
    pub status: CardStatus,
    pub currency: u16,
    pub credit_limit: u64,
    pub available: u64,
    /// Unix seconds.
    pub expires_at: u64,
}

/// What the ledger remembers that bears on this attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct History {
    /// The merchant already used this terminal nonce within [`nonce_memory_ms`].
    pub nonce_seen: bool,
    /// Approvals of this card within the velocity window.
    pub recent_approvals: u64,
}

/// How long a terminal nonce is remembered: two requests whose terminal
/// times both pass the ± window check can be at most twice the window apart.
pub fn nonce_memory_ms(policy: &PaymentPolicy) -> u64 {
    policy.time_window_ms.saturating_mul(2)
}

/// Ok(()) = approve; otherwise the first decline in the contract's order.
pub fn decide(
    details: &PaymentDetails,
    pre_declined: Option<&Decline>,
    card: Option<&CardSnapshot>,
    history: &History,
    policy: &PaymentPolicy,
    now_ms: u64,
) -> Result<(), Decline> {
    use DeclineCode::*;
    if let Some(decline) = pre_declined {
        return Err(decline.clone());
    }
    if details.terminal_time_ms.abs_diff(now_ms) > policy.time_window_ms {
        return Err(Decline::new(InvalidTransaction, "terminal time outside the allowed window"));
    }
    if history.nonce_seen {
        return Err(Decline::new(InvalidTransaction, "terminal nonce already used"));
    }
    if aaa_proto::currency::by_numeric(details.currency).is_none() {
        return Err(Decline::new(InvalidTransaction, format!("unknown currency {}", details.currency)));
    }
    if details.installments > policy.max_installments {
        return Err(Decline::new(
            InvalidTransaction,
            format!("{} installments, at most {} allowed", details.installments, policy.max_installments),
        ));
    }
    if details.amount == 0 {
        return Err(Decline::new(InvalidAmount, "amount is zero"));
    }
    if details.amount > i64::MAX as u64 {
        return Err(Decline::new(InvalidAmount, "amount is negative"));
    }
    if details.amount > policy.max_amount {
        return Err(Decline::new(InvalidAmount, "amount above the single-payment maximum"));
    }
    let Some(card) = card else {
        return Err(Decline::new(InvalidCard, "unknown card"));
    };
    if card.status == CardStatus::Blocked {
        return Err(Decline::new(RestrictedCard, "card is blocked"));
    }
    if now_ms / 1000 > card.expires_at {
        return Err(Decline::new(ExpiredCard, "card has expired"));
    }
    if u32::from(card.currency) != details.currency {
        return Err(Decline::new(
            NotPermitted,
            format!("card account is in currency {}, payment in {}", card.currency, details.currency),
        ));
    }
    if details.amount > card.credit_limit {
        return Err(Decline::new(ExceedsLimit, "amount above the card's credit limit"));
    }
    if details.amount > card.available {
        return Err(Decline::new(InsufficientFunds, "insufficient funds"));
    }
    if policy.velocity_max > 0 && history.recent_approvals >= u64::from(policy.velocity_max) {
        return Err(Decline::new(ExceedsFrequency, "too many payments in a short time"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn details() -> PaymentDetails {
        PaymentDetails {
            transaction_id: "T1".into(),
            merchant_id: "M1".into(),
            amount: 1250,
            currency: 840,
            installments: 0,
            terminal_nonce: [7; 16],
            terminal_time_ms: NOW,
        }
    }

    fn card() -> CardSnapshot {
        CardSnapshot {
            status: CardStatus::Active,
            currency: 840,
            credit_limit: 100_000,
            available: 50_000,
            expires_at: NOW / 1000 + 86_400,
        }
    }

    fn code(
        d: &PaymentDetails,
        pre: Option<&Decline>,
        c: Option<&CardSnapshot>,
        h: History,
        p: &PaymentPolicy,
    ) -> Option<u32> {
        decide(d, pre, c, &h, p, NOW).err().map(|d| d.code.value())
    }

    #[test]
    fn approves_a_good_payment() {
        assert_eq!(code(&details(), None, Some(&card()), History::default(), &PaymentPolicy::default()), None);
    }

    #[test]
    fn each_check_in_order() {
        let p = PaymentPolicy::default();
        let h = History::default();
        let c = card();
        let pre = Decline::new(DeclineCode::SecurityViolation, "authentication failed");
        // pre-declined wins over everything, even a missing card.
        assert_eq!(code(&details(), Some(&pre), None, h, &p), Some(63));
        let with = |f: fn(&mut PaymentDetails)| {
            let mut d = details();
            f(&mut d);
            d
        };
        assert_eq!(code(&with(|d| d.terminal_time_ms = NOW - 300_001), None, Some(&c), h, &p), Some(12));
        assert_eq!(code(&with(|d| d.terminal_time_ms = NOW + 300_001), None, Some(&c), h, &p), Some(12));
        assert_eq!(code(&with(|d| d.terminal_time_ms = NOW + 300_000), None, Some(&c), h, &p), None);
        let seen = History { nonce_seen: true, ..h };
        assert_eq!(code(&details(), None, Some(&c), seen, &p), Some(12));
        assert_eq!(code(&with(|d| d.currency = 999), None, Some(&c), h, &p), Some(12));
        assert_eq!(code(&with(|d| d.installments = 100), None, Some(&c), h, &p), Some(12));
        assert_eq!(code(&with(|d| d.installments = 99), None, Some(&c), h, &p), None);
        assert_eq!(code(&with(|d| d.amount = 0), None, Some(&c), h, &p), Some(13));
        assert_eq!(code(&with(|d| d.amount = u64::MAX), None, Some(&c), h, &p), Some(13));
        assert_eq!(code(&with(|d| d.amount = 1_000_000_000_001), None, Some(&c), h, &p), Some(13));
        assert_eq!(code(&details(), None, None, h, &p), Some(14));
        let blocked = CardSnapshot { status: CardStatus::Blocked, ..card() };
        assert_eq!(code(&details(), None, Some(&blocked), h, &p), Some(62));
        let expired = CardSnapshot { expires_at: NOW / 1000 - 1, ..card() };
        assert_eq!(code(&details(), None, Some(&expired), h, &p), Some(54));
        let last_second = CardSnapshot { expires_at: NOW / 1000, ..card() };
        assert_eq!(code(&details(), None, Some(&last_second), h, &p), None);
        let euro = CardSnapshot { currency: 978, ..card() };
        assert_eq!(code(&with(|d| d.currency = 840), None, Some(&euro), h, &p), Some(57));
        assert_eq!(code(&with(|d| d.amount = 100_001), None, Some(&c), h, &p), Some(61));
        assert_eq!(code(&with(|d| d.amount = 50_001), None, Some(&c), h, &p), Some(51));
        assert_eq!(code(&with(|d| d.amount = 50_000), None, Some(&c), h, &p), None);
        let busy = History { recent_approvals: 30, ..h };
        assert_eq!(code(&details(), None, Some(&c), busy, &p), Some(65));
        let unlimited = PaymentPolicy { velocity_max: 0, ..p.clone() };
        assert_eq!(code(&details(), None, Some(&c), busy, &unlimited), None);
    }

    #[test]
    fn earlier_checks_win() {
        let p = PaymentPolicy::default();
        // Blocked and expired and over the limit: 62 first.
        let bad = CardSnapshot { status: CardStatus::Blocked, expires_at: 0, credit_limit: 1, available: 0, ..card() };
        assert_eq!(code(&details(), None, Some(&bad), History::default(), &p), Some(62));
        // Zero amount and unknown card: 13 before 14.
        let mut d = details();
        d.amount = 0;
        assert_eq!(code(&d, None, None, History::default(), &p), Some(13));
        // Over the limit and over the funds: 61 before 51.
        let mut d = details();
        d.amount = 200_000;
        assert_eq!(code(&d, None, Some(&card()), History::default(), &p), Some(61));
    }
}
