//! The protocol-neutral AAA core that both front ends (`crate::radius`,
//! `crate::diameter`) drive: EAP conversations, the payment decision,
//! settlement and the counters.
//!
//! A front end decodes its wire format, reads the terminal's payment
//! attributes into `(vendor type, value)` pairs, and hands one EAP packet to
//! [`exchange::exchange`]; it gets back what to answer (challenge, accept,
//! reject, refuse, or nothing) and writes that in its own form. Nothing here
//! imports a wire codec, and the clocks are read at the edges and passed in.

pub mod conversations;
pub mod counters;
pub mod duplicates;
pub mod eap;
pub mod exchange;
pub mod payment;
pub mod settlement;

use std::time::Instant;

use counters::{Answers, Counters, LogLimiter, Settlements};
use eap::EapPolicy;

use crate::ledger::Ledger;
use crate::metrics::histogram::Histogram;

pub use conversations::Conversations;

/// What every front end shares: the ledger, the EAP policy, the counters.
pub struct Core<L> {
    pub ledger: L,
    pub policy: EapPolicy,
    pub counters: Counters,
    /// Payment answers by approval and decline code.
    pub answers: Answers,
    /// Settlements by action and result.
    pub settlements: Settlements,
    /// From the request that completes a payment's authentication reaching
    /// the core to its decision being durable: that round's EAP work, the
    /// wait for the ledger writer and the commit.
    pub decision_seconds: Histogram,
    /// The Eapay vendor id (DESIGN.md §3).
    pub vendor_id: u32,
    /// One line per (source, reason) per interval for what peers get wrong.
    pub logs: LogLimiter,
}

impl<L: Ledger> Core<L> {
    /// Assembles the core.
    pub fn new(ledger: L, policy: EapPolicy, vendor_id: u32) -> Self {
        Self {
            ledger,
            policy,
            counters: Counters::default(),
            answers: Answers::default(),
            settlements: Settlements::default(),
            decision_seconds: Histogram::default(),
            vendor_id,
            logs: LogLimiter::new(std::time::Duration::from_secs(10)),
        }
    }

    /// Forgets `table`'s idle conversations and reverses the approvals that
    /// were abandoned before the card received them
    /// (`payment::withdraw_approval`); returns how many conversations remain.
    pub async fn sweep<K: Eq + std::hash::Hash + Clone>(&self, table: &Conversations<K>, now: Instant) -> usize {
        let left = table.sweep(now);
        for mut pending in table.take_orphans() {
            pending
                .withdraw(&self.ledger, "the conversation was abandoned after the approval", payment::now_ms())
                .await;
        }
        left
    }
}
