//! Counters for everything the request path accepts, answers or drops.
//! Drops are never silent to the operator: each has a counter and a
//! rate-limited log line. The conversation counters live here; each front
//! end declares its transport's own with [`counters!`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aaa_proto::dictionary::eapay::{DeclineCode, SettlementAction};

/// Declares a struct of monotonic counters with a `snapshot()`.
#[macro_export]
macro_rules! counters {
    ($(#[$meta:meta])* $ty:ident { $($name:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub struct $ty { $(pub $name: std::sync::atomic::AtomicU64,)* }

        impl $ty {
            /// `(name, value)` pairs, for logs and Status-Server.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(std::sync::atomic::Ordering::Relaxed)),)*]
            }
        }
    };
}

counters!(
    /// What became of EAP conversations and settlements, whatever carried them.
    Counters {
    accepts,
    rejects,
    challenges,
    eap_discarded,
    eap_unknown_conversation,
    eap_unknown_conversation_approved,
    eap_table_full,
    eap_expired,
    eap_evicted,
    eap_failed_authentication,
    eap_failed_protocol,
    eap_failed_unknown_card,
    eap_failed_by_peer,
    eap_failed_too_many_rounds,
    eap_failed_pin,
    eap_declined,
    pseudonyms_refused,
    reauth_ids_refused,
    reauth_ids_used,
    store_errors,
    }
);

impl Counters {
    /// The counter of a conversation that ended in EAP-Failure for `reason`.
    pub fn failure(&self, reason: &eap_methods::FailureReason) -> &AtomicU64 {
        use eap_methods::FailureReason as R;
        match reason {
            R::AuthenticationFailed(_) => &self.eap_failed_authentication,
            R::UnknownIdentity | R::NoCommonMethod => &self.eap_failed_unknown_card,
            R::RejectedByPeer | R::ClientError(_) => &self.eap_failed_by_peer,
            R::Protocol(_) => &self.eap_failed_protocol,
            R::TooManyRounds => &self.eap_failed_too_many_rounds,
            R::IncorrectPin | R::PinTriesExceeded => &self.eap_failed_pin,
            R::Declined => &self.eap_declined,
        }
    }
}

/// Answers to payment requests that reached a decision: approvals, and
/// declines by code (ISO 8583 codes are two digits).
#[derive(Debug)]
pub struct Answers {
    approved: AtomicU64,
    declined: [AtomicU64; 100],
}

impl Default for Answers {
    fn default() -> Self {
        Self { approved: AtomicU64::new(0), declined: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

impl Answers {
    /// Counts one answer.
    pub fn record(&self, outcome: &crate::ledger::Outcome) {
        match outcome {
            crate::ledger::Outcome::Approved { .. } => bump(&self.approved),
            crate::ledger::Outcome::Declined(d) => {
                if let Some(c) = usize::try_from(d.code.value()).ok().and_then(|i| self.declined.get(i)) {
                    bump(c);
                }
            }
        }
    }

    /// Approvals so far.
    pub fn approved(&self) -> u64 {
        self.approved.load(Ordering::Relaxed)
    }

    /// Declines so far under every code the dictionary names.
    pub fn declined(&self) -> Vec<(DeclineCode, u64)> {
        (0u32..100)
            .filter_map(|v| DeclineCode::from_value(v).map(|code| (code, v)))
            .map(|(code, v)| (code, self.declined[v as usize].load(Ordering::Relaxed)))
            .collect()
    }
}

/// How each settlement action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettlementResult {
    Done,
    AlreadyDone,
    Tombstoned,
    Refused,
}

impl SettlementResult {
    pub const ALL: [Self; 4] = [Self::Done, Self::AlreadyDone, Self::Tombstoned, Self::Refused];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::AlreadyDone => "already_done",
            Self::Tombstoned => "tombstoned",
            Self::Refused => "refused",
        }
    }
}

/// Settlements by action and result.
#[derive(Debug, Default)]
pub struct Settlements {
    counts: [[AtomicU64; 4]; 3],
}

impl Settlements {
    const ACTIONS: [SettlementAction; 3] =
        [SettlementAction::Capture, SettlementAction::Reverse, SettlementAction::Refund];

    /// Counts one settlement.
    pub fn record(&self, action: SettlementAction, result: SettlementResult) {
        let a = Self::ACTIONS.iter().position(|x| *x == action);
        let r = SettlementResult::ALL.iter().position(|x| *x == result);
        if let (Some(a), Some(r)) = (a, r) {
            bump(&self.counts[a][r]);
        }
    }

    /// `(action, result, count)` for every pair.
    pub fn snapshot(&self) -> Vec<(SettlementAction, SettlementResult, u64)> {
        let mut all = Vec::with_capacity(12);
        for (a, action) in Self::ACTIONS.iter().enumerate() {
            for (r, result) in SettlementResult::ALL.iter().enumerate() {
                all.push((*action, *result, self.counts[a][r].load(Ordering::Relaxed)));
            }
        }
        all
    }
}

/// Adds one.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Lets one log line per (source, reason) through per interval, so a flood
/// of bad packets costs a counter, not a disk.
pub struct LogLimiter {
    last: Mutex<HashMap<(IpAddr, &'static str), Instant>>,
    every: Duration,
}

impl LogLimiter {
    /// One line per key per `every`.
    pub fn new(every: Duration) -> Self {
        Self { last: Mutex::new(HashMap::new()), every }
    }

    /// True if a line for this key may be logged now.
    pub fn allow(&self, source: IpAddr, reason: &'static str) -> bool {
        let Ok(mut last) = self.last.lock() else { return false };
        let now = Instant::now();
        if last.len() > 10_000 {
            last.retain(|_, t| now.duration_since(*t) < self.every);
        }
        match last.get(&(source, reason)) {
            Some(t) if now.duration_since(*t) < self.every => false,
            _ => {
                last.insert((source, reason), now);
                true
            }
        }
    }
}
